"""The spend ledger in ConfigMaps of the operator's namespace, one per tenant namespace.

Tenants hold no rights in the operator's namespace, so what is here is the
operator's (and its admins') word. One LIST a pass reads every entry, so an
admin's correction (``kubectl edit configmap``) counts from the next pass;
one merge patch per tenant namespace writes a pass's entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gpufinops.core.cost.ledger import LedgerEntry

LEDGER_LABEL = "gpufinops.dev/ledger"
NAMESPACE_ANNOTATION = "gpufinops.dev/namespace"
"""The tenant namespace a ledger ConfigMap is about."""


GROUPS = "gpufinops-group-budgets"
"""The ConfigMap of the alerts raised for team and namespace budgets."""


def _group_key(group: str) -> str:
    """A ConfigMap key for ``team/search`` (keys may not hold ``/``)."""
    return group.replace("/", ".", 1)


def _group_of(key: str) -> str:
    return key.replace(".", "/", 1)


def _config_map(
    name: str,
    data: Mapping[str, str | None],
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> client.V1ConfigMap:
    """A ConfigMap of ours holding ``data`` (a patch's ``None``, a removal, left out)."""
    return client.V1ConfigMap(
        metadata=client.V1ObjectMeta(
            name=name,
            labels={**(labels or {}), "app.kubernetes.io/managed-by": "gpufinops"},
            annotations=dict(annotations) if annotations else None,
        ),
        data={k: v for k, v in data.items() if v is not None},
    )


def ledger_name(namespace: str) -> str:
    return f"gpufinops-ledger-{namespace}"


class SpendLedger:
    """Reads and writes the ledger ConfigMaps in ``namespace``."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self._group_keys: set[str] = set()

    def read(self) -> dict[tuple[str, str], LedgerEntry | None]:
        """Every entry by (tenant namespace, workload name); None for one that is unreadable.

        Raises ``ApiException`` when the ConfigMaps cannot be listed: accounting
        must then wait, not fall back to what tenants can write.
        """
        listed = self.core.list_namespaced_config_map(
            self.namespace, label_selector=f"{LEDGER_LABEL}=true"
        )
        out: dict[tuple[str, str], LedgerEntry | None] = {}
        for item in listed.items:
            meta = item.metadata
            tenant = (meta.annotations or {}).get(NAMESPACE_ANNOTATION) if meta else None
            if tenant is None:
                continue
            for name, text in (item.data or {}).items():
                out[(tenant, name)] = LedgerEntry.decode(text)
        return out

    def read_groups(self) -> dict[str, tuple[str, ...]]:
        """The alerts raised for team and namespace budgets, by ``scope/name``."""
        listed = self.core.list_namespaced_config_map(
            self.namespace, field_selector=f"metadata.name={GROUPS}"
        )
        out: dict[str, tuple[str, ...]] = {}
        for item in listed.items:
            for key, text in (item.data or {}).items():
                try:
                    out[_group_of(key)] = tuple(str(k) for k in json.loads(text))
                except (ValueError, TypeError):
                    continue  # unreadable: those alerts may come again, nothing else lost
        self._group_keys = set(out)
        return out

    def write_groups(self, sent: Mapping[str, tuple[str, ...]]) -> None:
        """Set the remembered alerts of team and namespace budgets (groups no longer
        remembered are removed), with the verbs the ledger already has."""
        data: dict[str, Any] = {_group_key(k): json.dumps(list(v)) for k, v in sent.items()}
        data.update({_group_key(k): None for k in self._group_keys - set(sent)})
        try:
            self.core.patch_namespaced_config_map(GROUPS, self.namespace, {"data": data})
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_config_map(self.namespace, _config_map(GROUPS, data))
        self._group_keys = set(sent)

    def write(
        self, tenant: str, entries: Mapping[str, LedgerEntry], drop: Iterable[str] = ()
    ) -> None:
        """Set ``entries`` (and remove ``drop``) in the ConfigMap of ``tenant``."""
        data: dict[str, Any] = {name: entry.encode() for name, entry in entries.items()}
        data.update({name: None for name in drop if name not in entries})
        if not data:
            return
        name = ledger_name(tenant)
        try:
            self.core.patch_namespaced_config_map(name, self.namespace, {"data": data})
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = _config_map(name, data, {LEDGER_LABEL: "true"}, {NAMESPACE_ANNOTATION: tenant})
            try:
                self.core.create_namespaced_config_map(self.namespace, body)
            except ApiException as again:
                if again.status != 409:
                    raise
                self.core.patch_namespaced_config_map(name, self.namespace, {"data": data})
