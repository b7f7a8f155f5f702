"""Generate the AIWorkload API reference (``docs/reference.md``) from the models.

It reads the same structural schema the CRD carries (``gpufinops.api.crd``), so
the reference states exactly what the API server enforces: every field with its
type, default, description and validation, and the CEL rules of each object.
``gpufinops reference`` prints it; a unit test fails when the committed file
differs from what the models generate.
"""

import json
from collections.abc import Iterator
from typing import Any

from gpufinops.api.crd import PRINTER_COLUMNS, crd
from gpufinops.api.resource import GROUP, KIND, PLURAL, SHORT_NAME, VERSION

HEADER = (
    "<!-- Generated from operator/gpufinops/api by `gpufinops reference`. "
    "Do not edit by hand: regenerate with `gpufinops reference > docs/reference.md`. -->\n"
)

_INTRO = f"""\
# AIWorkload API reference

Group `{GROUP}`, version `{VERSION}`, kind `{KIND}` (plural `{PLURAL}`, short
name `{SHORT_NAME}`), namespaced. The pydantic models in
`operator/gpufinops/api` define it; the CRD in `crds/` and this page are both
generated from them, so what is written here is what the API server enforces
when a manifest is applied (OpenAPI constraints and CEL rules). The operator
re-validates every object with the same models and also checks what only it
can know, such as node pools missing from its config (the `InvalidSpec`
condition).

Each object has a section with a table of its fields. *Type* `[]T` is a list of
`T`, `map[string]T` an object with free keys. *Validation* lists what the API
server refuses: "required", bounds ("≥ 1", "> 0", "length ≤ 63"), patterns
and allowed values. Fields under `status` are written by the operator only.
"""


def _cell(text: str) -> str:
    """Prose safe inside a Markdown table cell (no column breaks, no HTML tags)."""
    text = " ".join(text.split()).replace("|", "\\|")
    return text.replace("<", "&lt;").replace(">", "&gt;")


def _code(value: Any) -> str:
    """A value as inline code, safe inside a table cell."""
    text = value if isinstance(value, str) and value else json.dumps(value, separators=(", ", ": "))
    return "`" + " ".join(text.split()).replace("|", "\\|") + "`"


def _items(count: int) -> str:
    return f"{count} item" if count == 1 else f"{count} items"


def _anchor(path: str) -> str:
    """GitHub's anchor for a heading that is ``path`` in backticks."""
    return "".join(c for c in path.lower() if c.isalnum() or c in "-_")


def _is_object(node: dict[str, Any]) -> bool:
    return node.get("type") == "object" and bool(node.get("properties"))


def _type(node: dict[str, Any], path: str) -> str:
    kind = node.get("type", "any")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return "object (free-form)"
    if kind == "array":
        items = node.get("items", {})
        inner = _type(items, f"{path}[]")
        return f"[]{inner}"
    if kind == "object":
        if _is_object(node):
            return f"[object](#{_anchor(path)})"
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            return f"map[string]{_type(extra, f'{path}{{}}')}"
        return "object"
    fmt = node.get("format")
    return f"{kind} ({fmt})" if fmt else kind


def _bound(node: dict[str, Any], key: str, exclusive: str, closed: str, open_: str) -> list[str]:
    if key not in node:
        return []
    op = open_ if node.get(exclusive) is True else closed
    return [f"{op} {node[key]:g}" if isinstance(node[key], float) else f"{op} {node[key]}"]


def _validation(node: dict[str, Any], required: bool) -> list[str]:
    out = ["required"] if required else []
    if "enum" in node:
        out.append("one of " + ", ".join(_code(v) for v in node["enum"]))
    out += _bound(node, "minimum", "exclusiveMinimum", "≥", ">")
    out += _bound(node, "maximum", "exclusiveMaximum", "≤", "<")
    if "minLength" in node:
        out.append(f"length ≥ {node['minLength']}")
    if "maxLength" in node:
        out.append(f"length ≤ {node['maxLength']}")
    if "pattern" in node:
        out.append(f"matches {_code(node['pattern'])}")
    if "minItems" in node:
        out.append(f"at least {_items(node['minItems'])}")
    if "maxItems" in node:
        out.append(f"at most {_items(node['maxItems'])}")
    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out.append("unique items")
    elif list_type == "map":
        keys = ", ".join(_code(k) for k in node.get("x-kubernetes-list-map-keys", []))
        out.append(f"items unique by {keys}")
    items = node.get("items")
    if isinstance(items, dict) and not _is_object(items):
        inner = _validation(items, False)
        if inner:
            out.append("each item: " + ", ".join(inner))
    return out


def _objects(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object with named fields under ``node``, depth first in field order."""
    if _is_object(node):
        yield path, node
        for name, sub in node["properties"].items():
            yield from _objects(sub, f"{path}.{name}")
    elif node.get("type") == "array" and isinstance(node.get("items"), dict):
        yield from _objects(node["items"], f"{path}[]")
    elif isinstance(node.get("additionalProperties"), dict):
        yield from _objects(node["additionalProperties"], f"{path}{{}}")


def _section(path: str, node: dict[str, Any]) -> list[str]:
    lines = [f"### `{path}`", ""]
    if node.get("description"):
        lines += [node["description"], ""]
    lines += [
        "| field | type | default | description | validation |",
        "|---|---|---|---|---|",
    ]
    required = set(node.get("required", []))
    for name, sub in node["properties"].items():
        default = _code(sub["default"]) if "default" in sub else ""
        lines.append(
            f"| `{name}` | {_type(sub, f'{path}.{name}')} | {default} "
            f"| {_cell(sub.get('description', ''))} "
            f"| {'; '.join(_validation(sub, name in required))} |"
        )
    rules = [(path, r) for r in node.get("x-kubernetes-validations", [])]
    rules += [
        (f"{path}.{name}", r)
        for name, sub in node["properties"].items()
        if not _is_object(sub)  # an object's own rules are listed in its section
        for r in sub.get("x-kubernetes-validations", [])
    ]
    if rules:
        lines += ["", "Rules (CEL, checked by the API server):", ""]
        for where, r in rules:
            field = r.get("fieldPath", "")
            target = f"`{where}{field}`" if field else f"`{where}`"
            lines.append(f"- {target}: {r['message']} (`{r['rule']}`; reason `{r['reason']}`)")
    return [*lines, ""]


def _columns() -> list[str]:
    lines = [
        "## Printer columns",
        "",
        "`kubectl get aiw` shows these columns; `-o wide` adds the ones marked wide.",
        "",
        "| column | JSONPath | shown |",
        "|---|---|---|",
    ]
    for c in PRINTER_COLUMNS:
        shown = "wide" if c.get("priority") else "always"
        lines.append(f"| {c['name']} | {_code(c['jsonPath'])} | {shown} |")
    return [*lines, ""]


def reference_markdown() -> str:
    """The whole reference page."""
    version = crd()["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    scale = version["subresources"]["scale"]
    lines = [HEADER, _INTRO]
    lines += [
        "Subresources: `status`, and `scale` (`kubectl scale aiw NAME --replicas=N` sets "
        f"`{scale['specReplicasPath'].lstrip('.')}`; it reads "
        f"`{scale['statusReplicasPath'].lstrip('.')}` and "
        f"`{scale['labelSelectorPath'].lstrip('.')}`).",
        "",
    ]
    lines += _columns()
    for part in ("spec", "status"):
        lines += [f"## {part}", ""]
        for path, node in _objects(schema[part], part):
            lines += _section(path, node)
    return "\n".join(lines).rstrip("\n") + "\n"
