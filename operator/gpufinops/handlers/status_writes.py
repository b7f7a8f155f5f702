"""What the per-workload loops share: status writes that never overwrite a newer
change of the conditions, and the workload's creation time."""

import json
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client

from gpufinops.adapters.status import without_nulls
from gpufinops.api.resource import GROUP, PLURAL, VERSION
from gpufinops.controllers.effects import StatusConflict

JSON_PATCH = "application/json-patch+json"


class ConditionalStatus:
    """Writes ``status`` only over the conditions the tick started from.

    Conditions are a list, which a patch replaces whole: writing over a newer
    list would drop what another handler set meanwhile. When the tick saw a
    conditions list, the write is a JSON patch that first ``test``s that list and
    then sets each top-level status field it owns; the API server refuses the
    whole patch when the list changed (raised as StatusConflict, and the loop
    decides again on its next tick). Writes of other status fields by others
    (the cost loop's ``status.cost``, Kopf's annotations) are no conflict, as they
    would be for a resourceVersion precondition: with thousands of workloads and
    a cost loop writing each of them, those false conflicts were a fifth of all
    status writes, each followed by a rewrite.

    The JSON patch is only for a writer whose every top-level field is written
    whole (``whole_fields``: the autoscaler's replicas, forecast, lastDecision and
    memory), since ``add`` replaces a field where a merge patch would merge into
    it. Other writers, and a tick that saw no conditions list yet, send a merge
    patch conditional on the resourceVersion last ``seen``.
    """

    def __init__(
        self, api: client.ApiClient, namespace: str, name: str, *, whole_fields: bool = False
    ) -> None:
        self._custom = client.CustomObjectsApi(api)
        self.namespace, self.name = namespace, name
        self.whole_fields = whole_fields
        self.version: str | None = None
        self.conditions: list[Any] | None = None

    def seen(self, body: Mapping[str, Any]) -> None:
        """Record the version and the conditions the coming tick starts from."""
        self.version = (body.get("metadata") or {}).get("resourceVersion")
        conditions = (body.get("status") or {}).get("conditions")
        # A plain copy: the body is a live view that the next watch event replaces.
        self.conditions = (
            json.loads(json.dumps(conditions)) if isinstance(conditions, list) else None
        )

    def operations(self, patch: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        """The JSON patch for ``patch``; None when only a merge patch can say it."""
        if (
            not self.whole_fields
            or self.conditions is None
            or any(v is None for v in patch.values())
        ):
            return None  # nothing to test, or a member to delete that may not exist
        ops: list[dict[str, Any]] = [
            {"op": "test", "path": "/status/conditions", "value": self.conditions}
        ]
        for key, value in patch.items():
            # ``add`` replaces the field whole: a member left out is deleted, as null
            # deletes it in a merge patch.
            ops.append({"op": "add", "path": f"/status/{key}", "value": without_nulls(value)})
        return ops

    def __call__(self, patch: dict[str, Any]) -> None:
        ops = self.operations(patch)
        try:
            if ops is not None:
                self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, self.namespace, PLURAL, self.name, ops,
                    _content_type=JSON_PATCH,
                )  # fmt: skip
            else:
                self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, self.namespace, PLURAL, self.name,
                    {"metadata": {"resourceVersion": self.version}, "status": patch},
                )  # fmt: skip
        except client.ApiException as exc:
            if exc.status == 409 or (exc.status == 422 and ops is not None and self._moved()):
                raise StatusConflict(str(exc.reason)) from exc
            raise

    def _moved(self) -> bool:
        """Whether the conditions are no longer those tested (the API server answers a
        failed ``test`` with the same 422 as an invalid value, and does not say which)."""
        current: dict[str, Any] = self._custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )  # type: ignore[assignment]
        return bool((current.get("status") or {}).get("conditions") != self.conditions)


def created_at(meta: Mapping[str, Any]) -> float:
    """The object's creationTimestamp as epoch seconds (now, when it has none yet)."""
    created = meta.get("creationTimestamp")
    if not created:
        return time.time()
    return datetime.fromisoformat(str(created).replace("Z", "+00:00")).timestamp()
