"""Confining a tenant's PromQL to its own namespace.

A custom query (``queueQuery``, ``demandQuery``, ``server: custom``) runs with
the operator's reach, and its value comes back in the tenant's status. So every
vector selector in it gets a ``<label>="<namespace>"`` matcher: Prometheus ANDs
matchers, so whatever else the selector says (``namespace=~".+"``,
``{__name__=~".+"}``), it then selects only the tenant's own series.

The matcher is inserted lexically (a small tokenizer finds each selector) and
the result is then checked with a real PromQL parser (``promql_parser``, the
Rust port of Prometheus' grammar): the confined query must parse, every
selector in it must carry the matcher, and apart from that one matcher its
syntax tree must be the original's. A query the tokenizer misreads is thus
refused, never run unconfined.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import promql_parser as promql

REFUSED_FUNCTIONS = frozenset({"info"})
"""``info()`` joins series the query does not select (``target_info`` by instance)."""

_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "atan2", "bool", "offset", "by", "without", "on", "ignoring",
        "group_left", "group_right", "inf", "nan",
        # aggregation operators: `sum by (x) (...)` has no parenthesis right after the name
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
"""Keywords followed by a parenthesised list of label names, not selectors."""
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_NUMBER = re.compile(
    r"0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"(?:(?:ms|s|m|h|d|w|y)(?:[0-9]+(?:ms|s|m|h|d|w|y))*)?"
)


class QueryRefused(ValueError):
    """The query cannot be confined; ``reason`` says why, for a condition."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Token:
    kind: str
    """``ident``, ``string``, ``number``, ``braces`` (a whole ``{...}``), ``brackets``
    (a whole ``[...]``) or ``op`` (one character)."""
    text: str
    start: int
    end: int


def confine(query: str, label: str, namespace: str) -> str:
    """``query`` with ``label="namespace"`` in every vector selector; raises ``QueryRefused``."""
    original = _parse(query)
    _check_functions(original)
    matcher = f"{label}={_quote(namespace)}"
    confined = _insert(query, matcher)
    try:
        parsed = promql.parse(confined)
    except Exception as exc:  # the parser raises plain exceptions for syntax errors
        raise QueryRefused(
            f"could not confine the query to namespace {namespace!r} ({exc}); "
            "write it more simply, e.g. without comments or or-matchers"
        ) from None
    wanted = (label, namespace)
    if _signature(parsed, strip=wanted) != _signature(original, strip=None):
        raise QueryRefused(
            f"could not confine the query to namespace {namespace!r}: "
            "it did not keep its meaning; write it more simply"
        )
    return confined


def _parse(query: str) -> Any:
    try:
        return promql.parse(query)
    except Exception as exc:  # the parser raises plain exceptions for syntax errors
        raise QueryRefused(f"not valid PromQL: {exc}") from None


def _check_functions(expr: Any) -> None:
    found: list[str] = []

    def visit(node: Any) -> None:
        if isinstance(node, promql.Call) and node.func.name in REFUSED_FUNCTIONS:
            found.append(node.func.name)

    promql.walk(expr, pre_visit=visit)
    if found:
        raise QueryRefused(
            f"function {found[0]}() is not allowed in a custom query: "
            "it reads series the query does not select"
        )


def _signature(expr: Any, *, strip: tuple[str, str] | None) -> list[tuple[Any, ...]]:
    """The tree in pre-order, each node with what it says, minus one ``strip`` matcher
    per selector (and per or-group). A selector without that matcher fails: it
    would read other namespaces."""
    out: list[tuple[Any, ...]] = []

    def matchers(group: list[Any]) -> tuple[tuple[str, str, str], ...]:
        items = [(str(m.op), m.name, m.value) for m in group]
        if strip is not None:
            wanted = ("MatchOp.Equal", *strip)
            if wanted not in items:
                raise QueryRefused("could not confine every selector of the query")
            items.remove(wanted)
        return tuple(items)

    def visit(node: Any) -> None:
        kind = type(node).__name__
        if isinstance(node, promql.VectorSelector):
            m = node.matchers
            out.append(
                (
                    kind,
                    node.name,
                    matchers(list(m.matchers)) if m.matchers or not m.or_matchers else (),
                    tuple(matchers(list(group)) for group in m.or_matchers),
                    str(node.offset),
                    str(node.at),
                )
            )
        elif isinstance(node, promql.Call):
            out.append((kind, node.func.name, len(node.args)))
        elif isinstance(node, (promql.AggregateExpr, promql.BinaryExpr)):
            out.append((kind, str(node.op), str(node.modifier)))
        elif isinstance(node, promql.MatrixSelector):
            out.append((kind, str(node.range)))
        elif isinstance(node, promql.SubqueryExpr):
            out.append((kind, str(node.range), str(node.step), str(node.offset), str(node.at)))
        elif isinstance(node, (promql.StringLiteral, promql.NumberLiteral)):
            out.append((kind, repr(node.val)))
        else:
            out.append((kind,))

    promql.walk(expr, pre_visit=visit)
    return out


def _insert(query: str, matcher: str) -> str:
    """``query`` with ``matcher`` added to each selector the tokenizer finds."""
    tokens = list(_tokens(query))
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement)
    label_list = False  # inside by (...), on (...) and the like: label names
    depth_at_list = -1
    depth = 0
    for i, token in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.kind == "op" and token.text == "(":
            depth += 1
            continue
        if token.kind == "op" and token.text == ")":
            depth -= 1
            if label_list and depth < depth_at_list:
                label_list = False
            continue
        if label_list:
            continue
        if token.kind == "ident":
            word = token.text.lower()
            if word in _LABEL_LISTS:
                if nxt is not None and nxt.kind == "op" and nxt.text == "(":
                    label_list, depth_at_list = True, depth + 1
                continue
            if word in _KEYWORDS or (nxt is not None and nxt.kind == "op" and nxt.text == "("):
                continue  # an operator, a number or a function call
            if nxt is not None and nxt.kind == "braces":
                continue  # the braces that follow are the selector's: handled there
            edits.append((token.end, token.end, "{" + matcher + "}"))
        elif token.kind == "braces":
            edits.append((token.start, token.end, _with_matcher(token.text, matcher)))
    out = query
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text + out[end:]
    return out


def _with_matcher(braces: str, matcher: str) -> str:
    inner = braces[1:-1].strip()
    if inner.endswith(","):
        inner = inner[:-1].rstrip()
    return "{" + (f"{inner},{matcher}" if inner else matcher) + "}"


def _tokens(query: str) -> Iterator[_Token]:
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c == "#":  # a comment runs to the end of the line
            end = query.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "\"'`":
            end = _string_end(query, i)
            yield _Token("string", query[i:end], i, end)
            i = end
        elif c == "{":
            end = _close(query, i, "{", "}")
            yield _Token("braces", query[i:end], i, end)
            i = end
        elif c == "[":
            end = _close(query, i, "[", "]")
            yield _Token("brackets", query[i:end], i, end)
            i = end
        elif (number := _NUMBER.match(query, i)) is not None and (c.isdigit() or c == "."):
            yield _Token("number", number.group(0), i, number.end())
            i = number.end()
        elif (ident := _IDENTIFIER.match(query, i)) is not None:
            yield _Token("ident", ident.group(0), i, ident.end())
            i = ident.end()
        else:
            yield _Token("op", c, i, i + 1)
            i += 1


def _string_end(query: str, start: int) -> int:
    quote = query[start]
    i = start + 1
    while i < len(query):
        if query[i] == "\\" and quote != "`":
            i += 2
            continue
        if query[i] == quote:
            return i + 1
        i += 1
    raise QueryRefused("not valid PromQL: unterminated string")


def _close(query: str, start: int, opening: str, closing: str) -> int:
    """The index after the ``closing`` that ends the block at ``start`` (strings skipped)."""
    i = start + 1
    while i < len(query):
        c = query[i]
        if c in "\"'`":
            i = _string_end(query, i)
            continue
        if c == opening:
            raise QueryRefused(f"not valid PromQL: nested {opening!r}")
        if c == closing:
            return i + 1
        i += 1
    raise QueryRefused(f"not valid PromQL: {opening!r} is not closed")


def _quote(value: str) -> str:
    """A PromQL double-quoted string holding exactly ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'
