"""Reading Kopf indexes: each key holds a store of values, usually exactly one."""

from typing import Any

import kopf


def first(index: kopf.Index[Any, Any], key: Any) -> Any:
    """The value indexed under ``key`` (the first, if several), or None."""
    for value in index.get(key, []):
        return value
    return None
