"""Reading Kopf indexes: each key holds a store of values, usually exactly one."""

from collections.abc import Mapping
from typing import Any

import kopf

from gpufinops.core.tenancy import NamespaceView


def first(index: kopf.Index[Any, Any], key: Any) -> Any:
    """The value indexed under ``key`` (the first, if several), or None."""
    for value in index.get(key, []):
        return value
    return None


def namespace_view(indexes: Mapping[str, Any], namespace: str) -> NamespaceView:
    """The namespace with its labels (``namespace_labels`` index); none when unseen."""
    index: kopf.Index[str, dict[str, str]] = indexes.get("namespace_labels") or {}  # type: ignore[assignment]
    labels = first(index, namespace)
    return NamespaceView(namespace, dict(labels or {}))
