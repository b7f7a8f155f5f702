"""docs/quickstart.md's manifests and values are valid as written: the AIWorkload passes
the API models, the chart values pass the chart's schema and render."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.helm_chart import helm_binary, kinds, rendered, template

from gpufinops.api.spec import AIWorkloadSpec
from gpufinops.config.model import parse_config

DOC = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def _yaml_blocks() -> list[list[dict[str, Any]]]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    return [[d for d in yaml.safe_load_all(b) if d] for b in blocks]


def test_every_yaml_block_parses() -> None:
    assert len(_yaml_blocks()) >= 4


def test_the_aiworkload_is_valid() -> None:
    workloads = [d for b in _yaml_blocks() for d in b if d.get("kind") == "AIWorkload"]
    assert workloads
    for doc in workloads:
        spec = AIWorkloadSpec.model_validate(doc["spec"])
        assert spec.mode == "Recommend"


def test_the_chart_values_render_with_the_schema(tmp_path: Path) -> None:
    (values,) = [b[0] for b in _yaml_blocks() if "config" in b[0] and "image" in b[0]]
    parse_config(values["config"])  # the operator reads the same config
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = rendered(template(helm_binary(), "-f", str(path)))
    assert kinds(docs, "ServiceMonitor") and kinds(docs, "PrometheusRule")


@pytest.mark.parametrize("kind", ["Deployment", "PodMonitor", "NodePool"])
def test_the_other_manifests_are_there(kind: str) -> None:
    assert [d for b in _yaml_blocks() for d in b if d.get("kind") == kind]
