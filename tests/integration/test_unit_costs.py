"""Unit costs from a real Prometheus: the operator reads what an Inference workload's
pods served (prompt and generated tokens, requests) with one query per signal and
publishes the spend per million input and output tokens and per request.

A Deployment holds one GPU on the KWOK pool ``l4-spot`` (the packaged config's
price); a test exporter pretends to be its vLLM server, scraped every second by a
real Prometheus. The workload is in Recommend mode, so its replicas stay put."""

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.exporter import Exporter
from tests.support.inference import llm_deployment, model_pod, set_vllm
from tests.support.operator import running_operator
from tests.support.polling import poll
from tests.support.promserver import PrometheusServer

from gpufinops.config.model import load_config
from gpufinops.localcluster.binaries import find_prometheus

NS = "unit-costs"
INPUT_PER_S, OUTPUT_PER_S, REQUESTS_PER_S = 120.0, 40.0, 2.0
DEFAULT = Path(__file__).resolve().parents[2] / "operator/gpufinops/config/default.yaml"
WORKLOAD = {
    "apiVersion": "gpufinops.dev/v1alpha1",
    "kind": "AIWorkload",
    "metadata": {"name": "llm", "namespace": NS},
    "spec": {
        "type": "Inference",
        "mode": "Recommend",
        "costAllocation": {"team": "serving", "model": "llama"},
        "inference": {"targetRef": {"name": "llm"}, "minReplicas": 1, "maxReplicas": 2,
                      "forecast": {"enabled": False}},
    },
}  # fmt: skip


@pytest.fixture
def served(kubectl) -> Iterator[Exporter]:
    with Exporter() as exporter:
        labels = {"namespace": NS, "pod": model_pod("llm")}
        set_vllm(exporter, NS, waiting=0, completions_per_s=REQUESTS_PER_S)
        exporter.set_rate("vllm:prompt_tokens_total", labels, INPUT_PER_S)
        exporter.set_rate("vllm:generation_tokens_total", labels, OUTPUT_PER_S)
        kubectl("create", "namespace", NS)
        for manifest in (llm_deployment(NS), WORKLOAD):
            done = kubectl("apply", "-n", NS, "-f", "-", input=json.dumps(manifest))
            assert done.returncode == 0, done.stderr
        yield exporter
        kubectl("patch", "aiw", "llm", "-n", NS, "--type=merge",
                "-p", '{"metadata": {"finalizers": null}}')  # fmt: skip
        kubectl("delete", "namespace", NS, "--wait=true", "--timeout=90s")


def test_spend_per_input_and_output_token_and_per_request(
    kubeconfig: Path, kubectl, served: Exporter, tmp_path: Path
) -> None:
    config = yaml.safe_load(DEFAULT.read_text())
    config["cost"] = {"timezone": "UTC", "intervalSeconds": 2}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    pool = load_config(tmp_path / "config.yaml").pool("l4-spot")
    assert pool is not None and pool.gpu_hourly_price_usd
    usd_per_s = pool.gpu_hourly_price_usd / 3600
    binary = find_prometheus(install=True)
    with (
        PrometheusServer(binary, tmp_path / "prom", [served.target]) as prometheus,
        running_operator(kubeconfig, tmp_path, "--config", str(tmp_path / "config.yaml"),
                         "--prometheus-url", prometheus.url, "--namespace", NS) as op,
    ):  # fmt: skip
        labels = {"namespace": NS, "workload": "llm", "model": "llama", "basis": "allocation"}

        def unit(name: str) -> float:
            return op.metric(f"gpufinops_cost_per_{name}", **labels)

        poll(lambda: unit("request_usd") > 0, "the cost per request", deadline=90)
        per_input, per_output = unit("million_input_tokens_usd"), unit("million_output_tokens_usd")
        per_token, per_request = unit("million_tokens_usd"), unit("request_usd")
        hourly = op.metric("gpufinops_hourly_cost_usd", namespace=NS, workload="llm")
        assert hourly == pytest.approx(usd_per_s * 3600)
        # An output token is charged four input tokens (cost.outputTokenWeight).
        assert per_output == pytest.approx(4 * per_input)
        # The split follows what was served, three input tokens to one output token:
        # the tokens at their split prices cost what they cost at the flat price.
        # (Prometheus' rate() over a 5-minute window that has only just begun reads
        # less than the exporter's rates; all counters began together, so the ratios
        # hold while the levels grow.)
        split = INPUT_PER_S * per_input + OUTPUT_PER_S * per_output
        assert split == pytest.approx((INPUT_PER_S + OUTPUT_PER_S) * per_token, rel=0.05)
        # A request carries 80 tokens: its cost is 80 tokens' worth.
        tokens_per_request = (INPUT_PER_S + OUTPUT_PER_S) / REQUESTS_PER_S
        assert per_request == pytest.approx(tokens_per_request * per_token / 1e6, rel=0.05)
