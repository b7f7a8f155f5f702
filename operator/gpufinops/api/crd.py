"""Generate the CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema 2020-12 with ``$ref``s and ``anyOf`` for optional
fields; the API server wants a *structural* OpenAPI v3.0 schema: everything
inlined, one type per node, no ``additionalProperties: false``, numeric
exclusive bounds as booleans. This module does exactly that translation and
adds the CRD envelope (printer columns, subresources).
"""

from typing import Any

import yaml

from gpufinops.api.resource import (
    CRD_NAME,
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAME,
    SINGULAR,
    VERSION,
)
from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.api.status import AIWorkloadStatus

# Keywords kept from JSON Schema; everything else (title, $defs, ...) is dropped.
_KEPT = {
    "type",
    "format",
    "description",
    "enum",
    "default",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "maxProperties",
    "required",
    "nullable",
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
    {"name": "Target", "type": "string", "jsonPath": ".status.target"},
    {"name": "Min", "type": "integer", "jsonPath": ".spec.inference.minReplicas"},
    {"name": "Max", "type": "integer", "jsonPath": ".spec.inference.maxReplicas"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas.current"},
    {"name": "Desired", "type": "integer", "jsonPath": ".status.replicas.desired"},
    {"name": "Placement", "type": "string", "jsonPath": ".status.placement.pool"},
    {
        "name": "On-demand",
        "type": "integer",
        "priority": 1,
        "jsonPath": ".status.spot.onDemand.replicas",
        "description": "Replicas of the target when spot replicas run beside it.",
    },
    {
        "name": "Fallback",
        "type": "integer",
        "priority": 1,
        "jsonPath": ".status.spot.onDemand.fallback",
        "description": "On-demand replicas standing in for spot ones not serving.",
    },
    {
        "name": "Spend (MTD)",
        "type": "number",
        "jsonPath": ".status.cost.monthToDateUSD",
        "description": "USD spent since the start of the month.",
    },
    {"name": "Budget %", "type": "integer", "jsonPath": ".status.budget.usedPercent"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Mode",
        "type": "string",
        "jsonPath": ".spec.mode",
        "priority": 1,
    },
    {
        "name": "Team",
        "type": "string",
        "jsonPath": ".spec.costAllocation.team",
        "priority": 1,
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class _Translator:
    def __init__(self, defs: dict[str, Any]) -> None:
        self._defs = defs

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        """Inline ``$ref`` and collapse ``anyOf [X, null]``; siblings override the target."""
        node = dict(node)
        if "$ref" in node:
            target = self._defs[node.pop("$ref").rsplit("/", 1)[-1]]
            node = {**self._resolve(target), **node}
        if "anyOf" in node:
            options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
            if len(options) != 1:
                raise ValueError(f"unions are not structural: {options}")
            inner = self._resolve(options[0])
            node = {**inner, **node}
        if "allOf" in node:
            parts = node.pop("allOf")
            merged: dict[str, Any] = {}
            for part in parts:
                merged.update(self._resolve(part))
            node = {**merged, **node}
        return node

    def translate(self, node: dict[str, Any]) -> dict[str, Any]:
        node = self._resolve(node)
        out: dict[str, Any] = {}
        if "const" in node:
            out["enum"] = [node["const"]]
        for key, value in node.items():
            if key in _KEPT or key.startswith("x-kubernetes-"):
                out[key] = value
        if "exclusiveMinimum" in node:
            out["minimum"] = node["exclusiveMinimum"]
            out["exclusiveMinimum"] = True
        if "exclusiveMaximum" in node:
            out["maximum"] = node["exclusiveMaximum"]
            out["exclusiveMaximum"] = True
        if node.get("type") == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
            props = node.get("properties", {})
            out["properties"] = {name: self.translate(sub) for name, sub in props.items()}
            if not props:
                out.pop("properties")
            extra = node.get("additionalProperties")
            if isinstance(extra, dict):
                out["additionalProperties"] = self.translate(extra)
        if node.get("type") == "array" and "items" in node:
            out["items"] = self.translate(node["items"])
        if "required" in out and not out["required"]:
            out.pop("required")
        if "format" in out and out["format"] not in {"date-time", "int32", "int64"}:
            out.pop("format")
        if out.get("default", 0) is None:
            out.pop("default")
        return _ordered(out)


_ORDER = ["description", "type", "format", "enum", "default"]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order: what a field is first, then its constraints."""
    first = [k for k in _ORDER if k in node]
    rest = sorted(k for k in node if k not in _ORDER and k != "properties")
    tail = ["properties"] if "properties" in node else []
    return {k: node[k] for k in first + rest + tail}


def openapi_schema(model: type[AIWorkloadSpec] | type[AIWorkloadStatus]) -> dict[str, Any]:
    """Structural OpenAPI v3 schema of one model, as the CRD embeds it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    return _Translator(defs).translate(raw)


def crd() -> dict[str, Any]:
    """The AIWorkload CustomResourceDefinition, as a plain dict."""
    spec_schema = openapi_schema(AIWorkloadSpec)
    status_schema = openapi_schema(AIWorkloadStatus)
    status_schema.pop("required", None)
    root = {
        "type": "object",
        "description": (
            "AIWorkload describes one AI workload (inference service, training job or "
            "experiment) whose GPU capacity, placement and spend gpufinops manages."
        ),
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this representation of an object.",
            },
            "kind": {"type": "string", "description": "REST resource this object represents."},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "gpufinops",
                "app.kubernetes.io/part-of": "gpufinops",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": [SHORT_NAME],
                "categories": ["gpufinops"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas.current",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }


HEADER = "# Generated from operator/gpufinops/api by `gpufinops crd`. Do not edit by hand.\n"


def crd_yaml() -> str:
    """The CRD as the YAML committed under ``crds/``."""
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100)
