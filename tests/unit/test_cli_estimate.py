"""``gpufinops estimate``: the CI cost check on the examples and on bad input."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from tests.conftest import EXAMPLES_DIR, invalid_manifests

from gpufinops.cli.main import main

L4 = 4.6016 / 4  # per-GPU price of the default l4-on-demand pool


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["estimate", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_examples_are_within_budget_as_a_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-f", str(EXAMPLES_DIR))
    assert code == 0, err
    for name in ("notebook-alice", "llama-3-8b", "finetune-llama-3-8b", "TOTAL", "within budget"):
        assert name in out


def test_json_totals_and_worst_case(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-f", str(EXAMPLES_DIR), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    by_name = {w["name"]: w for w in doc["workloads"]}
    llama = by_name["llama-3-8b"]
    assert llama["worstCaseMonthlyUSD"] == pytest.approx(12 * 1 * L4 * 730)
    assert llama["expectedMonthlyUSD"] > 1 * L4 * 730  # the business-hours floor adds to it
    assert doc["totalExpectedMonthlyUSD"] == pytest.approx(
        sum(w["expectedMonthlyUSD"] for w in doc["workloads"]), abs=0.01
    )
    training = by_name["finetune-llama-3-8b"]
    assert training["gpusPerPod"] == 4
    assert training["expectedMonthlyUSD"] == pytest.approx(4 * 1.93 / 4 * 6, rel=0.01)


def test_markdown_for_a_pull_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-f", str(EXAMPLES_DIR), "--format", "markdown")
    assert code == 0
    assert out.startswith("### GPU cost estimate")
    assert "**Within budget**" in out
    assert "| `default/llama-3-8b` | Inference |" in out


def test_over_the_limit_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-f", str(EXAMPLES_DIR), "--max-monthly-usd", "100")
    assert code == 1
    assert "OVER BUDGET" in out and "--max-monthly-usd" in out


def copy_examples(tmp_path: Path) -> Path:
    target = tmp_path / "manifests"
    shutil.copytree(EXAMPLES_DIR, target)
    return target


def edit_llama(directory: Path, **inference: object) -> None:
    path = directory / "inference-vllm.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["kind"] == "AIWorkload":
            doc["spec"]["inference"].update(inference)
    path.write_text(yaml.safe_dump_all(docs))


def test_a_workload_over_its_own_budget_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = copy_examples(tmp_path)
    edit_llama(d, minReplicas=5)
    code, out, _ = run(capsys, "-f", str(d))
    assert code == 1
    assert "default/llama-3-8b: expected" in out and "exceeds its budget" in out


def test_diff_against_a_base(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = copy_examples(tmp_path)
    edit_llama(d, minReplicas=4)  # above the business-hours floor of 3: 4 replicas all month
    (d / "training-spot.yaml").unlink()
    code, out, _ = run(capsys, "-f", str(d), "--diff", str(EXAMPLES_DIR), "--format", "json")
    assert code == 0
    changes = {c["key"]: c for c in json.loads(out)["diff"]}
    llama = changes["default/llama-3-8b"]
    assert llama["newUSD"] == pytest.approx(4 * L4 * 730)
    assert llama["deltaUSD"] == pytest.approx(llama["newUSD"] - llama["baseUSD"], abs=0.01)
    removed = changes["default/finetune-llama-3-8b"]
    assert removed["newUSD"] is None and removed["deltaUSD"] < 0
    code, out, _ = run(capsys, "-f", str(d), "--diff", str(EXAMPLES_DIR), "--format", "markdown")
    assert "#### Change against the base" in out
    assert f"| `default/llama-3-8b` | ${llama['baseUSD']:,.2f} | ${4 * L4 * 730:,.2f} | +$" in out
    assert "| `default/finetune-llama-3-8b` | $11.58 | - | -$11.58 |" in out


def test_missing_target_assumes_one_gpu_per_pod(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = (EXAMPLES_DIR / "inference-vllm.yaml").read_text()
    (tmp_path / "aiw.yaml").write_text(src.split("\n---\n")[1])
    code, out, _ = run(capsys, "-f", str(tmp_path / "aiw.yaml"))
    assert code == 0
    assert "Deployment llama-3-8b not among the files: assumed 1 GPU per pod" in out


INVALID = invalid_manifests()


@pytest.mark.parametrize("path", [p for p, _, _ in INVALID], ids=[p.stem for p, _, _ in INVALID])
def test_invalid_workloads_exit_2_naming_file_and_field(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "-f", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"error: {path}: spec")


def test_invalid_gpu_quantity_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = copy_examples(tmp_path)
    path = d / "inference-vllm.yaml"
    path.write_text(
        path.read_text().replace("limits: {nvidia.com/gpu: 1}", "limits: {nvidia.com/gpu: lots}")
    )
    code, _, err = run(capsys, "-f", str(path))
    assert code == 2
    assert f"{path}: spec.template.spec.containers[0].resources.limits: 'lots'" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: AIWorkload\nspec: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "document 1: expected a mapping"),
        ("kind: AIWorkload\nspec: {type: Inference}\n", "metadata.name"),
    ],
)
def test_unreadable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, _, err = run(capsys, "-f", str(path))
    assert code == 2
    assert str(path) in err and message in err


def test_missing_path_and_bad_config_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path / "nope"))
    assert code == 2 and "no such file" in err
    config = tmp_path / "config.yaml"
    config.write_text("nodePools: [{name: x}]\n")
    code, _, err = run(capsys, "-f", str(EXAMPLES_DIR), "--config", str(config))
    assert code == 2 and "nodePools" in err


def test_no_workloads_is_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "-f", str(tmp_path))
    assert code == 0
    assert "no AIWorkload manifests" in err


def test_markdown_cells_cannot_forge_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A team or a workload name is the manifest author's text: in a PR comment it must
    # stay inside its cell, whatever pipes, backticks, newlines or markup it holds.
    d = copy_examples(tmp_path)
    path = d / "inference-vllm.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        if doc["kind"] == "AIWorkload":
            doc["spec"]["costAllocation"]["team"] = "t | x |\n\n**Within budget** <b>ok</b>"
            doc["metadata"]["name"] = "llama` | forged"
    path.write_text(yaml.safe_dump_all(docs))
    code, out, _ = run(capsys, "-f", str(d), "--max-monthly-usd", "100", "--format", "markdown")
    assert code == 1
    lines = out.splitlines()
    assert [line for line in lines if "Within budget" in line and "|" not in line] == []
    assert sum("**Over budget**" in line for line in lines) == 1
    rows = [line for line in lines if line.startswith("| ") and "GPU" not in line]
    header_cells = next(line for line in lines if line.startswith("| WORKLOAD")).count(" | ")
    for row in rows[: len(rows) - 1]:
        if row.startswith("| ---") or row.startswith("| Workload") or "Total" in row:
            continue
        unescaped = row.replace("\\|", "").count(" | ")
        assert unescaped in (header_cells, 3), row
    assert "<b>" not in out


def test_manifests_from_standard_input(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    text = (EXAMPLES_DIR / "inference-vllm.yaml").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text)))
    code, out, err = run(capsys, "-f", "-", "--format", "json")
    assert code == 0, err
    assert [w["name"] for w in json.loads(out)["workloads"]] == ["llama-3-8b"]


def test_fail_on_increase_against_the_base(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = copy_examples(tmp_path)
    edit_llama(d, minReplicas=4)
    code, out, _ = run(capsys, "-f", str(d), "--diff", str(EXAMPLES_DIR), "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert [c["key"] for c in doc["diff"]] == ["default/llama-3-8b"]  # only what changed
    percent = doc["diff"][0]["deltaPercent"]
    assert percent > 0
    code, out, _ = run(capsys, "-f", str(d), "--diff", str(EXAMPLES_DIR),
                       "--fail-on-increase", f"{percent / 2:.1f}")  # fmt: skip
    assert code == 1 and "--fail-on-increase" in out
    code, _, _ = run(capsys, "-f", str(d), "--diff", str(EXAMPLES_DIR),
                     "--fail-on-increase", f"{percent + 50:.1f}")  # fmt: skip
    assert code == 0
    code, _, err = run(capsys, "-f", str(d), "--fail-on-increase", "5")
    assert code == 2 and "--diff" in err
    code, out, _ = run(capsys, "-f", str(d), "--diff", str(EXAMPLES_DIR), "--show-unchanged",
                       "--format", "json")  # fmt: skip
    assert len(json.loads(out)["diff"]) == 3


def test_a_gpu_deployment_without_an_aiworkload_is_priced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = copy_examples(tmp_path)
    pod = {
        "nodeSelector": {"gpufinops.dev/pool": "l4-on-demand"},
        "containers": [{"name": "c", "image": "x", "resources": {"limits": {"nvidia.com/gpu": 2}}}],
    }
    rogue = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rogue", "namespace": "ml", "labels": {"gpufinops.dev/team": "r"}},
        "spec": {"replicas": 3, "template": {"spec": pod}},
    }  # fmt: skip
    cpu_only = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 9, "template": {"spec": {"containers": [{"name": "w"}]}}},
    }  # fmt: skip
    (d / "rogue.yaml").write_text(yaml.safe_dump_all([rogue, cpu_only]))
    code, out, _ = run(capsys, "-f", str(d), "--format", "json")
    assert code == 0
    by_key = {f"{w['namespace']}/{w['name']}": w for w in json.loads(out)["workloads"]}
    assert "default/web" not in by_key
    unmanaged = by_key["ml/rogue"]
    assert unmanaged["type"] == "Unmanaged" and unmanaged["team"] == "r"
    assert unmanaged["expectedMonthlyUSD"] == pytest.approx(3 * 2 * L4 * 730)
    # The examples' own targets are driven by their AIWorkloads: not counted twice.
    assert sum(w["type"] == "Unmanaged" for w in by_key.values()) == 1
    code, out, _ = run(capsys, "-f", str(d), "--diff", str(EXAMPLES_DIR),
                       "--fail-on-increase", "10")  # fmt: skip
    assert code == 1 and "ml/rogue" in out
