"""docs/metrics-and-events.md lists exactly what the operator emits.

Event reasons are the members of ``core.events.EventReason`` (the only type the
posting interfaces accept); condition types are read from the source (handlers,
controllers, core, adapters) with ``ast``; metrics from the metric objects of
``gpufinops.adapters.operator_metrics``. A reason, condition type or metric
that is emitted but not documented fails, and so does a documented one that
is no longer emitted.
"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase
from pydantic import BaseModel

from gpufinops.adapters import operator_metrics
from gpufinops.config.model import OperatorConfig
from gpufinops.core.events import EventReason

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "gpufinops"
DOC = ROOT / "docs" / "metrics-and-events.md"
CONFIG_DOC = ROOT / "docs" / "config.md"
SCANNED = ("handlers", "controllers", "core", "adapters")

# Reasons of another duty's enum posted by converting them to an EventReason (the
# conversion fails at once for a value that is not a member).
CONVERTED = {
    "EventReason(alert.reason)": "AlertReason",
    "EventReason(current.reason)": "TargetProblem",
}


# ------------------------------------------------------------------ source


def _files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (PACKAGE / d).rglob("*.py"))


def _parse(path: Path) -> ast.Module:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node  # type: ignore[attr-defined]
    return tree


def _str_enums() -> dict[str, dict[str, str]]:
    """Every StrEnum of the package: class name -> member -> value."""
    out: dict[str, dict[str, str]] = {}
    for path in _files("api", *SCANNED):
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Name) and b.id == "StrEnum" for b in node.bases
            ):
                out[node.name] = {
                    t.targets[0].id: t.value.value
                    for t in node.body
                    if isinstance(t, ast.Assign)
                    and isinstance(t.targets[0], ast.Name)
                    and isinstance(t.value, ast.Constant)
                    and isinstance(t.value.value, str)
                }
    return out


def _enclosing(node: ast.AST, kind: type | tuple[type, ...]) -> ast.AST | None:
    while hasattr(node, "parent"):
        node = node.parent
        if isinstance(node, kind):
            return node
    return None


class _Resolver:
    """The string values an expression can take, as far as the source says."""

    def __init__(self, tree: ast.Module, enums: dict[str, dict[str, str]]) -> None:
        self.tree, self.enums = tree, enums
        self.unresolved: list[str] = []

    def _assigned(self, name: str, scope: ast.AST) -> list[ast.expr]:
        values = []
        for node in ast.walk(scope):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                values.append(node.value)
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
                and node.value is not None
            ):
                values.append(node.value)
        return values

    def _is_parameter(self, name: str, at: ast.AST) -> bool:
        func = _enclosing(at, (ast.FunctionDef, ast.AsyncFunctionDef))
        if func is None:
            return False
        args = func.args  # type: ignore[attr-defined]
        return name in {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}

    def values(self, expr: ast.expr) -> set[str] | None:
        """None: a pass-through parameter (a wrapper), not a source of values."""
        if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
            return {expr.value}
        if isinstance(expr, ast.IfExp):
            return (self.values(expr.body) or set()) | (self.values(expr.orelse) or set())
        if isinstance(expr, ast.Name):
            if self._is_parameter(expr.id, expr):
                return None
            func = _enclosing(expr, (ast.FunctionDef, ast.AsyncFunctionDef))
            found = self._assigned(expr.id, func) if func is not None else []
            found = found or [
                n.value
                for n in self.tree.body
                if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == expr.id for t in n.targets)
            ]
            out: set[str] = set()
            for value in found:
                out |= self.values(value) or set()
            if not out:
                self.unresolved.append(ast.unparse(expr))
            return out
        if (
            isinstance(expr, ast.Attribute)
            and isinstance(expr.value, ast.Name)
            and expr.value.id in self.enums
        ):
            return {self.enums[expr.value.id][expr.attr]}
        if isinstance(expr, ast.Call):
            func = expr.func
            if isinstance(func, ast.Name) and func.id == "str" and expr.args:
                return self.values(expr.args[0])
            if isinstance(func, ast.Attribute) and func.attr == "get":
                # {"ScaleUp": "ScaledUp", ...}.get(action, "Scaled"), the dict bound to a name
                out = set()
                for source in self._dicts(func.value):
                    out |= {v.value for v in source.values if isinstance(v, ast.Constant)}
                if len(expr.args) > 1:
                    out |= self.values(expr.args[1]) or set()
                return out
        self.unresolved.append(ast.unparse(expr))
        return set()

    def _dicts(self, expr: ast.expr) -> list[ast.Dict]:
        if isinstance(expr, ast.Dict):
            return [expr]
        if isinstance(expr, ast.Name):
            func = _enclosing(expr, (ast.FunctionDef, ast.AsyncFunctionDef)) or self.tree
            return [v for v in self._assigned(expr.id, func) if isinstance(v, ast.Dict)]
        return []


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        base = func.value.id if isinstance(func.value, ast.Name) else ""
        return f"{base}.{func.attr}" if base == "kopf" else func.attr
    return func.id if isinstance(func, ast.Name) else ""


def referenced_event_reasons() -> dict[str, set[str]]:
    """EventReason members the source posts -> files: named (``EventReason.X``), or
    converted from the enum of a duty that shares them (``EventReason(alert.reason)``
    for AlertReason, ``EventReason(current.reason)`` for TargetProblem)."""
    enums = _str_enums()
    names = enums["EventReason"]
    out: dict[str, set[str]] = {}
    for path in _files(*SCANNED):
        if path.name == "events.py" and path.parent.name == "core":
            continue
        text = path.read_text()
        for member, value in names.items():
            if re.search(rf"\bEventReason\.{member}\b", text):
                out.setdefault(value, set()).add(path.name)
        for call, enum in CONVERTED.items():
            if call in text:
                for value in enums[enum].values():
                    out.setdefault(value, set()).add(path.name)
    return out


def emitted_condition_types() -> set[str]:
    """ConditionType's values and every type given to set_condition or a _condition helper."""
    enums = _str_enums()
    out = set(enums["ConditionType"].values())
    for path in _files(*SCANNED):
        tree = _parse(path)
        resolver = _Resolver(tree, enums)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            expr = next((k.value for k in node.keywords if k.arg == "type"), None)
            if name == "_condition" and node.args:
                expr = node.args[0]
            if name in {"set_condition", "_condition"} and expr is not None:
                out |= resolver.values(expr) or set()
    return out


def exported_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Metric name as scraped (counters end in _total) -> (type, labels)."""
    out = {}
    for value in vars(operator_metrics).values():
        if isinstance(value, MetricWrapperBase):
            suffix = {"counter": "_total", "info": "_info"}.get(value._type, "")
            name = value._name + suffix
            out[name] = (value._type, tuple(value._labelnames))
    return out


# ------------------------------------------------------------------ the document


def _section(title: str) -> str:
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(title)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/metrics-and-events.md has no '## {title}' section"
    return match.group(1)


def _rows(section: str) -> list[list[str]]:
    return [
        [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in section.splitlines()
        if line.startswith("| `")
    ]


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def documented_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        _codes(row[0])[0]: (row[1], tuple(_codes(row[2]))) for row in _rows(_section("Metrics"))
    }


def documented_events() -> set[str]:
    return {_codes(row[0])[0] for row in _rows(_section("Events"))}


def documented_conditions() -> set[str]:
    return {_codes(row[0])[0] for row in _rows(_section("Conditions"))}


# ------------------------------------------------------------------ tests


def test_every_metric_is_documented_with_its_type_and_labels() -> None:
    exported, documented = exported_metrics(), documented_metrics()
    missing = sorted(set(exported) - set(documented))
    assert not missing, f"metrics not in docs/metrics-and-events.md: {missing}"
    stale = sorted(set(documented) - set(exported))
    assert not stale, f"documented metrics the operator does not export: {stale}"
    for name, (kind, labels) in exported.items():
        assert documented[name][0] == kind, f"{name} is a {kind}"
        assert sorted(documented[name][1]) == sorted(labels), f"{name} labels are {labels}"


def test_every_event_reason_is_documented() -> None:
    members = {r.value for r in EventReason}
    documented = documented_events()
    missing = sorted(members - documented)
    assert not missing, f"Event reasons not in docs/metrics-and-events.md: {missing}"
    stale = sorted(documented - members)
    assert not stale, f"documented Event reasons that are not EventReason members: {stale}"


def test_every_event_reason_is_posted_somewhere() -> None:
    unused = sorted({r.value for r in EventReason} - set(referenced_event_reasons()))
    assert not unused, f"EventReason members nothing posts: {unused}"


def test_events_are_posted_only_through_the_typed_poster() -> None:
    """``kopf.event`` takes any string; ``handlers.events.post`` takes an EventReason
    (checked by mypy), so posting only through it keeps every reason in the enum."""
    callers = sorted(
        str(p.relative_to(PACKAGE)) for p in _files(*SCANNED) if "kopf.event(" in p.read_text()
    )
    assert callers == ["handlers/events.py"]


def test_every_condition_type_is_documented() -> None:
    emitted, documented = emitted_condition_types(), documented_conditions()
    assert not emitted - documented, f"undocumented condition types: {emitted - documented}"
    assert not documented - emitted, f"documented types nothing sets: {documented - emitted}"


def test_the_extractor_sees_each_kind_of_call_site() -> None:
    """Guards the test itself: one reason from each way the code posts Events."""
    referenced = referenced_event_reasons()
    for reason in [
        "Accepted",  # SpecReview(...) in core/spec_review, posted by handlers/aiworkload
        "ScaledUp",  # a dict of actions in core/scaling/plan
        "MetricsUnavailable",  # a member named in a core plan
        "IdleDetected",  # a NodeEvent of core/idle, posted on the node
        "BudgetExceeded",  # AlertReason, converted
    ]:
        assert reason in referenced, reason
    assert {"Ready", "InvalidSpec", "ConflictingAutoscaler"} <= emitted_condition_types()


def _model_of(annotation: object) -> tuple[type[BaseModel] | None, str]:
    """The pydantic model inside ``X | None`` or ``list[X]``, and "[]" for a list."""
    suffix = ""
    while typing.get_origin(annotation) is not None:
        if typing.get_origin(annotation) is list:
            suffix = "[]"
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0] if args else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, suffix
    return None, suffix


def config_paths(model: type[BaseModel], prefix: str = "") -> dict[str, type | None]:
    """Every key of the operator config as written in YAML -> its model (None: a value)."""
    out: dict[str, type | None] = {}
    for name, field in model.model_fields.items():
        path = f"{prefix}{field.alias or name}"
        inner, suffix = _model_of(field.annotation)
        out[path] = inner
        if inner is not None:
            out.update(config_paths(inner, f"{path}{suffix}."))
    return out


def documented_config_paths() -> dict[str, type | None]:
    """config_paths, with a model used at several paths documented once, at the shortest."""
    paths = config_paths(OperatorConfig)
    home: dict[type, str] = {}
    for path, model in sorted(paths.items(), key=lambda item: len(item[0])):
        if model is not None:
            home.setdefault(model, path)
    elsewhere = [p for p, m in paths.items() if m is not None and home[m] != p]
    return {p: m for p, m in paths.items() if not any(p.startswith(f"{e}.") for e in elsewhere)}


def test_every_config_key_is_documented() -> None:
    text = CONFIG_DOC.read_text()
    rows = {_codes(row[0])[0] for row in _rows(text)}
    paths = documented_config_paths()
    assert "nodePools[].idleShutdown" in paths and "idleShutdown.schedule[].cron" in paths
    assert "nodePools[].idleShutdown.dryRun" not in paths
    # Values, and objects inside lists (nodePools[].idleShutdown), have a table row.
    values = [p for p, model in paths.items() if model is None or "[]." in p]
    missing = [p for p in values if p not in rows]
    assert not missing, f"operator config keys without a row in docs/config.md: {missing}"
    sections = [p for p, model in paths.items() if model is not None]
    missing = [p for p in sections if f"`{p}`" not in text and f"`{p}[]`" not in text]
    assert not missing, f"operator config sections not in docs/config.md: {missing}"


# Pages whose links are checked (the reference pages this test keeps true).
LINKED_PAGES = [
    "README.md",
    "cli.md",
    "comparison.md",
    "config.md",
    "metrics-and-events.md",
    "reference.md",
    "troubleshooting.md",
]


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    out = set()
    for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower())
        out.add(slug.replace(" ", "-"))
    return out


def test_links_between_pages_resolve() -> None:
    docs = ROOT / "docs"
    broken = []
    for page in LINKED_PAGES:
        text = re.sub(r"`[^`\n]*`", "", (docs / page).read_text())  # code is not links
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (docs / path) if path else docs / page
            if not linked.exists():
                broken.append(f"{page}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked.read_text()):
                broken.append(f"{page}: {target} (no such heading)")
    assert not broken, broken
