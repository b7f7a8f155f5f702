"""`gpufinops convert keda`: a ScaledObject's Prometheus trigger as an AIWorkload in
Recommend mode, reading the same query, and refusals that name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpufinops.api.spec import AIWorkloadSpec, Mode
from gpufinops.core.keda import ConversionError, convert

SCALED_OBJECT: dict[str, Any] = yaml.safe_load(
    """
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: llama, namespace: ml, labels: {team: search}}
spec:
  scaleTargetRef: {name: llama-3-8b}
  minReplicaCount: 0
  maxReplicaCount: 12
  cooldownPeriod: 600
  pollingInterval: 15
  fallback: {failureThreshold: 3, replicas: 4}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        scaleDown:
          stabilizationWindowSeconds: 120
          policies: [{type: Percent, value: 50, periodSeconds: 60}]
  triggers:
    - type: prometheus
      metadata:
        serverAddress: http://prometheus.monitoring:9090
        query: sum(vllm:num_requests_waiting{namespace="ml"})
        threshold: "8"
        activationThreshold: "1"
"""
)


def test_every_setting_with_a_counterpart_is_carried_over() -> None:
    converted = convert(SCALED_OBJECT)
    manifest = converted.manifest
    assert manifest["metadata"] == {"name": "llama", "namespace": "ml"}
    spec = AIWorkloadSpec.model_validate(manifest["spec"])
    assert spec.mode == Mode.RECOMMEND  # next to the ScaledObject it changes nothing
    assert spec.cost_allocation.team == "search"
    inference = spec.inference
    assert inference is not None
    assert inference.target_ref.name == "llama-3-8b"
    assert (inference.min_replicas, inference.max_replicas) == (0, 12)
    assert inference.metrics.queue_query == 'sum(vllm:num_requests_waiting{namespace="ml"})'
    assert inference.target_queue_depth_per_replica == 8.0
    assert inference.forecast.enabled is False  # the same signals, nothing more
    assert inference.scale_to_zero is not None and inference.scale_to_zero.idle_seconds == 600
    assert inference.fallback is not None and inference.fallback.replicas == 4
    assert inference.behavior is not None and inference.behavior.scale_down is not None
    assert inference.behavior.scale_down.stabilization_window_seconds == 120
    said = " ".join(converted.notes)
    for dropped in ("serverAddress", "activationThreshold", "pollingInterval"):
        assert dropped in said


def test_keda_defaults_apply_when_unset() -> None:
    minimal = {
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {
            "scaleTargetRef": {"name": "d"},
            "triggers": [{"type": "prometheus", "metadata": {"query": "sum(q)", "threshold": 2}}],
        },
    }
    converted = convert(minimal, team="ads")
    inference = converted.manifest["spec"]["inference"]
    assert (inference["minReplicas"], inference["maxReplicas"]) == (0, 100)
    assert inference["scaleToZero"] == {"enabled": True, "idleSeconds": 300}
    assert converted.manifest["spec"]["costAllocation"] == {"team": "ads"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"kind": "ScaledJob"}, "kind"),
        ({"spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "s"}}},
         "spec.scaleTargetRef.kind"),
        ({"spec": {"scaleTargetRef": {"name": "d"}, "triggers": [{"type": "cpu"}]}},
         "spec.triggers"),
        ({"spec": {"scaleTargetRef": {"name": "d"},
                   "triggers": [{"type": "prometheus", "metadata": {"threshold": 1}}]}},
         "spec.triggers[0].metadata.query"),
        ({"spec": {"scaleTargetRef": {"name": "d"}, "triggers": [
            {"type": "prometheus", "metadata": {"query": "q", "threshold": "many"}}]}},
         "spec.triggers[0].metadata.threshold"),
        ({"spec": {"scaleTargetRef": {"name": "d"}, "maxReplicaCount": 0, "triggers": [
            {"type": "prometheus", "metadata": {"query": "q"}}]}}, "spec.inference"),
    ],
)  # fmt: skip
def test_what_cannot_be_converted_names_the_field(change: dict[str, Any], field: str) -> None:
    doc = {**SCALED_OBJECT, **change}
    with pytest.raises(ConversionError, match=field.replace("[", r"\[").replace("]", r"\]")):
        convert(doc)


def test_the_command_prints_the_manifest_and_notes(tmp_path: Path) -> None:
    source = tmp_path / "so.yaml"
    source.write_text(yaml.safe_dump(SCALED_OBJECT))
    done = subprocess.run(
        [sys.executable, "-m", "gpufinops", "convert", "keda", "-f", str(source)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [manifest] = list(yaml.safe_load_all(done.stdout))
    assert manifest["kind"] == "AIWorkload" and manifest["spec"]["mode"] == "Recommend"
    assert "note: ScaledObject llama: " in done.stderr
    empty = tmp_path / "none.yaml"
    empty.write_text("kind: ConfigMap\n")
    refused = subprocess.run(
        [sys.executable, "-m", "gpufinops", "convert", "keda", "-f", str(empty)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "no ScaledObject" in refused.stderr
