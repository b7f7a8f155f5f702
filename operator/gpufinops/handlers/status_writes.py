"""What the per-workload loops share: status writes conditional on the version a tick
started from, and the workload's creation time."""

import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client

from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.handlers.inference import StatusConflict


class ConditionalStatus:
    """Writes ``status`` with a merge patch carrying the resourceVersion last ``seen``.

    Conditions are a list, which a merge patch replaces whole: writing over a newer
    object would drop what another handler set meanwhile. The API server answers
    409 instead, raised as StatusConflict, and the loop rewrites on its next tick.
    """

    def __init__(self, api: client.ApiClient, namespace: str, name: str) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.version: str | None = None

    def seen(self, body: Mapping[str, Any]) -> None:
        """Record the version whose status the coming tick starts from."""
        self.version = (body.get("metadata") or {}).get("resourceVersion")

    def __call__(self, patch: dict[str, Any]) -> None:
        try:
            self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURAL, self.name,
                {"metadata": {"resourceVersion": self.version}, "status": patch},
            )  # fmt: skip
        except client.ApiException as exc:
            if exc.status == 409:
                raise StatusConflict(str(exc.reason)) from exc
            raise


def created_at(meta: Mapping[str, Any]) -> float:
    """The object's creationTimestamp as epoch seconds (now, when it has none yet)."""
    created = meta.get("creationTimestamp")
    if not created:
        return time.time()
    return datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
