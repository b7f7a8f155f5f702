"""Kubernetes reads as wire-format dicts.

The client's generated models make every field optional, so reading them under
mypy strict is a ``None`` check per attribute; the demo only reads, and a
missing field is simply absent from a dict. Lists are fetched without the
client's deserialisation (``_preload_content=False``), which is also cheaper.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Obj = dict[str, Any]


def items(call: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Obj]:
    """The items of a ``list_*`` call, as the API server sent them."""
    response = call(*args, _preload_content=False, **kwargs)
    data = json.loads(response.data)
    found: list[Obj] = data.get("items") or []
    return found


def get(obj: Obj, *path: str) -> Any:
    """``obj[a][b]...``, or None as soon as a level is missing."""
    current: Any = obj
    for key in path:
        if not isinstance(current, dict):
            return None
        current = current.get(key)
    return current


def condition_true(obj: Obj, ctype: str) -> bool:
    return any(
        c.get("type") == ctype and c.get("status") == "True"
        for c in get(obj, "status", "conditions") or []
    )
