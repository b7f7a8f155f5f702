"""``gpufinops estimate | report`` subcommands.

``estimate`` is the cost check for CI: exit 0 within budget, 1 over budget,
2 when the input cannot be estimated (the message names the file and field),
so a pipeline can tell "too expensive" from "broken".
"""

import argparse
import codecs
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpufinops.config.model import ConfigError, OperatorConfig, load_config
from gpufinops.core.cost.estimate import WorkloadEstimate, estimate
from gpufinops.core.cost.manifests import EstimateError, Manifest
from gpufinops.core.cost.periods import HOURS_PER_MONTH

EXIT_OK, EXIT_OVER_BUDGET, EXIT_INVALID = 0, 1, 2


class InputError(Exception):
    """Input that cannot be estimated; the message names the file and the field."""


STDIN = Path("-")
"""``-f -``: manifests from standard input (``helm template ... | gpufinops estimate -f -``)."""


def _yaml_files(target: Path, recursive: bool) -> list[Path]:
    if target == STDIN:
        return [target]
    if target.is_dir():
        pattern = "**/*" if recursive else "*"
        return sorted(p for p in target.glob(pattern) if p.suffix in (".yaml", ".yml"))
    if target.is_file():
        return [target]
    raise InputError(f"{target}: no such file or directory")


def _text(path: Path) -> str:
    """The file as text: UTF-8 (with or without a byte-order mark), or UTF-16 with a
    byte-order mark, the encodings YAML allows; otherwise an error naming the line."""
    raw = sys.stdin.buffer.read() if path == STDIN else path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-16 text: {exc.reason}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text (byte {exc.start + 1}: {exc.reason}); "
            "save the file as UTF-8"
        ) from None


def read_manifests(targets: Sequence[Path], recursive: bool = False) -> list[Manifest]:
    """Every YAML document of the given files and directories, tagged with its file."""
    out = []
    for target in targets:
        for path in _yaml_files(target, recursive):
            try:
                text = _text(path)
            except OSError as exc:
                raise InputError(f"{path}: cannot read it: {exc}") from exc
            try:
                docs = list(yaml.safe_load_all(text))
            except yaml.reader.ReaderError as exc:
                line = text.count("\n", 0, exc.position) + 1
                bad = exc.character if isinstance(exc.character, str) else chr(exc.character)
                raise InputError(
                    f"{path}:{line}: not valid YAML: character {bad!r} is not allowed in YAML"
                ) from exc
            except yaml.MarkedYAMLError as exc:
                mark = exc.problem_mark or exc.context_mark
                where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
                raise InputError(f"{where}: not valid YAML: {exc.problem or exc}") from exc
            except yaml.YAMLError as exc:
                raise InputError(f"{path}: not valid YAML: {exc}") from exc
            except RecursionError:
                raise InputError(f"{path}: not valid YAML: nested too deeply") from None
            for i, doc in enumerate(docs):
                if doc is None:
                    continue
                if not isinstance(doc, dict):
                    raise InputError(f"{path}: document {i + 1}: expected a mapping")
                out.append(Manifest(str(path), doc))
    return out


@dataclass(frozen=True)
class Verdict:
    over_budget: bool
    reasons: list[str]


def judge(estimates: Sequence[WorkloadEstimate], max_monthly_usd: float | None) -> Verdict:
    """Over budget when the expected total passes the limit or a workload passes its own."""
    reasons = []
    total = sum(e.expected_monthly_usd for e in estimates)
    if max_monthly_usd is not None and total > max_monthly_usd:
        reasons.append(
            f"expected total ${total:,.2f}/month exceeds --max-monthly-usd ${max_monthly_usd:,.2f}"
        )
    for e in estimates:
        if e.over_own_budget:
            reasons.append(
                f"{e.key}: expected ${e.expected_monthly_usd:,.2f}/month exceeds its budget "
                f"${e.budget_monthly_usd:,.2f}/month"
            )
    return Verdict(bool(reasons), reasons)


@dataclass(frozen=True)
class Change:
    key: str
    base_usd: float | None
    new_usd: float | None

    @property
    def delta_usd(self) -> float:
        return (self.new_usd or 0.0) - (self.base_usd or 0.0)

    @property
    def delta_percent(self) -> float | None:
        """The change as a percentage of the base; None for a workload the base lacks."""
        if not self.base_usd:
            return None
        return 100.0 * self.delta_usd / self.base_usd

    @property
    def changed(self) -> bool:
        return abs(self.delta_usd) >= 0.005 or (self.base_usd is None) != (self.new_usd is None)


def increase_verdict(changes: Sequence[Change], limit_percent: float) -> str | None:
    """Why the change fails ``--fail-on-increase``, or None: the expected monthly total
    rose by more than ``limit_percent`` % of the base's (from a base of $0, any rise)."""
    base = sum(c.base_usd or 0.0 for c in changes)
    delta = sum(c.delta_usd for c in changes)
    if delta <= 0.005:
        return None
    percent = 100.0 * delta / base if base > 0 else float("inf")
    if percent <= limit_percent:
        return None
    shown = f"{percent:.1f} %" if base > 0 else "from $0"
    return (
        f"expected monthly cost rises by {_signed(delta)} ({shown}), more than "
        f"--fail-on-increase {limit_percent:g} %"
    )


def diff(base: Sequence[WorkloadEstimate], new: Sequence[WorkloadEstimate]) -> list[Change]:
    """Expected monthly cost per workload before and after (None: absent on that side)."""
    before = {e.key: e.expected_monthly_usd for e in base}
    after = {e.key: e.expected_monthly_usd for e in new}
    keys = list(after) + [k for k in before if k not in after]
    return [Change(k, before.get(k), after.get(k)) for k in keys]


def _percent(value: float | None) -> str:
    return "new" if value is None else f"{value:+.1f} %"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _signed(value: float) -> str:
    return f"{'+' if value >= 0 else '-'}${abs(value):,.2f}"


_HEADER = ["WORKLOAD", "TYPE", "TEAM", "POOL", "GPUS/POD", "PODS", "$/GPU-H"]
_HEADER += ["EXPECTED/MO", "WORST/MO", "BUDGET/MO"]
_FIRST_NUMBER = _HEADER.index("GPUS/POD")
"""Columns from this one on hold numbers (right-aligned in both the table and Markdown)."""


def _rows(estimates: Sequence[WorkloadEstimate]) -> list[list[str]]:
    return [
        [
            e.key,
            e.type,
            e.team,
            f"{e.pool} ({e.capacity_type})",
            f"{e.gpus_per_pod:g}",
            f"{e.expected_pods:.2f}/{e.max_pods}",
            f"{e.gpu_hourly_usd:.4f}",
            _usd(e.expected_monthly_usd),
            _usd(e.worst_case_monthly_usd),
            _usd(e.budget_monthly_usd),
        ]
        for e in estimates
    ]


def _totals(estimates: Sequence[WorkloadEstimate]) -> tuple[float, float]:
    return (
        sum(e.expected_monthly_usd for e in estimates),
        sum(e.worst_case_monthly_usd for e in estimates),
    )


def _notes(estimates: Sequence[WorkloadEstimate]) -> list[str]:
    return [f"{e.key}: {n}" for e in estimates for n in e.notes]


def render_table(
    estimates: Sequence[WorkloadEstimate], verdict: Verdict, changes: list[Change] | None
) -> str:
    # Imported here: only this format draws tables, and every command builds this parser.
    from gpufinops.sim.terminal import Column, text_table

    expected, worst = _totals(estimates)
    totals = ["TOTAL", "", "", "", "", "", "", _usd(expected), _usd(worst), ""]
    columns = [
        Column(header, numeric=i >= _FIRST_NUMBER, footer=total)
        for i, (header, total) in enumerate(zip(_HEADER, totals, strict=True))
    ]
    lines = [text_table(columns, _rows(estimates))]
    lines += [f"note: {n}" for n in _notes(estimates)]
    if changes is not None:
        lines.append("")
        lines += [
            f"{c.key}: {_usd(c.base_usd)} -> {_usd(c.new_usd)} ({_signed(c.delta_usd)}, "
            f"{_percent(c.delta_percent)})"
            for c in changes
        ]
        lines.append(f"expected change: {_signed(sum(c.delta_usd for c in changes))}/month")
    lines.append("")
    lines.append("OVER BUDGET" if verdict.over_budget else "within budget")
    lines += [f"  {r}" for r in verdict.reasons]
    return "\n".join(lines) + "\n"


_MD_SPECIAL = str.maketrans({c: f"\\{c}" for c in "\\`*_[]|~"})
"""Inline markup, and the cell boundary; the text is one line inside a cell or after a
list marker, where block markup (headings, lists) cannot start."""


def md_text(text: str) -> str:
    """Text from a manifest (a team, a workload name), safe in a Markdown table cell or
    list item of a PR comment: one line, no markup, no HTML, no cell boundary."""
    flat = " ".join(str(text).split())
    return (
        flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").translate(_MD_SPECIAL)
    )


def _md_code(text: str) -> str:
    """A workload key as code when it can be one (no backtick), else as escaped text."""
    flat = " ".join(str(text).split())
    if "`" in flat:
        return md_text(flat)
    # A pipe in a table cell is escaped even inside code (GFM splits cells first).
    return "`" + flat.replace("|", "\\|") + "`"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def render_markdown(
    estimates: Sequence[WorkloadEstimate], verdict: Verdict, changes: list[Change] | None
) -> str:
    expected, worst = _totals(estimates)
    status = "Over budget" if verdict.over_budget else "Within budget"
    out = [
        "### GPU cost estimate",
        "",
        f"**{status}**: expected **{_usd(expected)}/month**, worst case {_usd(worst)}/month "
        f"({HOURS_PER_MONTH:g} h months).",
    ]
    if verdict.reasons:
        out += ["", *[f"- {md_text(r)}" for r in verdict.reasons]]
    align = ["---"] * _FIRST_NUMBER + ["---:"] * (len(_HEADER) - _FIRST_NUMBER)
    out += ["", _md_row(_HEADER), _md_row(align)]
    out += [
        _md_row([_md_code(r[0]), *(md_text(c) for c in r[1:_FIRST_NUMBER]), *r[_FIRST_NUMBER:]])
        for r in _rows(estimates)
    ]
    out.append(
        _md_row(["**Total**", "", "", "", "", "", "", f"**{_usd(expected)}**", _usd(worst), ""])
    )
    if changes is not None:
        out += ["", "#### Change against the base", ""]
        out += [
            _md_row(["Workload", "Base", "New", "Change", "%"]),
            _md_row(["---", "---:", "---:", "---:", "---:"]),
        ]
        out += [
            _md_row(
                [
                    _md_code(c.key),
                    _usd(c.base_usd),
                    _usd(c.new_usd),
                    _signed(c.delta_usd),
                    _percent(c.delta_percent),
                ]
            )
            for c in changes
        ]
        total = _signed(sum(c.delta_usd for c in changes))
        out.append(_md_row(["**Total**", "", "", f"**{total}**", ""]))
    notes = _notes(estimates)
    if notes:
        out += ["", "<details><summary>Assumptions</summary>", ""]
        out += [f"- {md_text(n)}" for n in notes]
        out += ["", "</details>"]
    return "\n".join(out) + "\n"


def _cents(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _workload_json(e: WorkloadEstimate) -> dict[str, Any]:
    """One workload in the JSON's one style: camelCase, money in cents."""
    return {
        "source": e.source,
        "namespace": e.namespace,
        "name": e.name,
        "key": e.key,
        "type": e.type,
        "team": e.team,
        "pool": e.pool,
        "capacityType": e.capacity_type,
        "gpuHourlyUSD": round(e.gpu_hourly_usd, 4),
        "gpusPerPod": e.gpus_per_pod,
        "maxPods": e.max_pods,
        "expectedPods": round(e.expected_pods, 4),
        "expectedHours": round(e.expected_hours, 2),
        "worstCaseMonthlyUSD": _cents(e.worst_case_monthly_usd),
        "expectedMonthlyUSD": _cents(e.expected_monthly_usd),
        "budgetMonthlyUSD": _cents(e.budget_monthly_usd),
        "notes": list(e.notes),
    }


def render_json(
    estimates: Sequence[WorkloadEstimate],
    verdict: Verdict,
    changes: list[Change] | None,
    max_monthly_usd: float | None,
) -> str:
    expected, worst = _totals(estimates)
    doc: dict[str, Any] = {
        "currency": "USD",
        "hoursPerMonth": HOURS_PER_MONTH,
        "workloads": [_workload_json(e) for e in estimates],
        "totalExpectedMonthlyUSD": round(expected, 2),
        "totalWorstCaseMonthlyUSD": round(worst, 2),
        "maxMonthlyUSD": max_monthly_usd,
        "overBudget": verdict.over_budget,
        "reasons": verdict.reasons,
    }
    if changes is not None:
        doc["diff"] = [
            {
                "key": c.key,
                "baseUSD": _cents(c.base_usd),
                "newUSD": _cents(c.new_usd),
                "deltaUSD": round(c.delta_usd, 2),
                "deltaPercent": None if c.delta_percent is None else round(c.delta_percent, 2),
            }
            for c in changes
        ]
        doc["totalDeltaMonthlyUSD"] = round(sum(c.delta_usd for c in changes), 2)
    return json.dumps(doc, indent=2) + "\n"


def _estimate_paths(
    paths: Sequence[Path], config: OperatorConfig, recursive: bool
) -> list[WorkloadEstimate]:
    try:
        return estimate(read_manifests(paths, recursive), config)
    except EstimateError as exc:
        raise InputError(str(exc)) from exc


def _cmd_estimate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        estimates = _estimate_paths(args.files, config, args.recursive)
        base = None if args.diff is None else _estimate_paths([args.diff], config, args.recursive)
    except (ConfigError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if args.fail_on_increase is not None and base is None:
        print("error: --fail-on-increase compares with --diff BASE_DIR; give both", file=sys.stderr)
        return EXIT_INVALID
    if not estimates:
        print("note: no AIWorkload manifests found", file=sys.stderr)
    verdict = judge(estimates, args.max_monthly_usd)
    changes = None if base is None else diff(base, estimates)
    if changes is not None and args.fail_on_increase is not None:
        why = increase_verdict(changes, args.fail_on_increase)
        if why is not None:
            verdict = Verdict(True, [*verdict.reasons, why])
    if changes is not None and not args.show_unchanged:
        changes = [c for c in changes if c.changed]
    if args.format == "json":
        text = render_json(estimates, verdict, changes, args.max_monthly_usd)
    elif args.format == "markdown":
        text = render_markdown(estimates, verdict, changes)
    else:
        text = render_table(estimates, verdict, changes)
    sys.stdout.write(text)
    return EXIT_OVER_BUDGET if verdict.over_budget else EXIT_OK


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """Add the cost commands to the top-level parser."""
    p = sub.add_parser(
        "estimate",
        help="monthly GPU cost of AIWorkload manifests before they are applied (CI check)",
        description="Worst-case and expected monthly GPU cost of AIWorkload manifests, with "
        "the Deployments/StatefulSets/Jobs they target when given. Exit 0 within budget, "
        "1 over budget, 2 on invalid input.",
    )
    p.add_argument(
        "-f",
        "--filename",
        dest="files",
        type=Path,
        action="append",
        required=True,
        help="manifest file or directory of *.yaml/*.yml (repeatable); - reads standard input",
    )
    p.add_argument("-R", "--recursive", action="store_true", help="descend into directories")
    p.add_argument(
        "--config", type=Path, default=None, help="operator config YAML (default: packaged)"
    )
    p.add_argument(
        "--max-monthly-usd",
        type=_non_negative,
        default=None,
        help="fail (exit 1) when the expected monthly total is above this",
    )
    p.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    p.add_argument(
        "--diff",
        type=Path,
        default=None,
        metavar="BASE_DIR",
        help="also show the change against the manifests in BASE_DIR (e.g. the base branch)",
    )
    p.add_argument(
        "--fail-on-increase",
        type=_non_negative,
        default=None,
        metavar="PERCENT",
        help="with --diff: fail (exit 1) when the expected monthly total rises by more than "
        "PERCENT %% of the base's",
    )
    p.add_argument(
        "--show-unchanged",
        action="store_true",
        help="with --diff: list unchanged workloads too (only changed ones by default)",
    )
    p.set_defaults(func=_cmd_estimate)
