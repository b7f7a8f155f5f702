"""``simulate training``: pod-list reading, the event-driven replay, and the command."""

import json
from pathlib import Path

import pytest
from tests.support.traces import trace_path

from gpufinops.cli.main import main
from gpufinops.config.model import load_config
from gpufinops.sim.traces import TraceError
from gpufinops.sim.training import ReplayOptions, read_pods, simulate_training

REAL_TRACE = "alibaba-gpu2023-pods.csv"
HEADER = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time"
)
SPOT_PRICE = 1.93 / 4  # g6.12xlarge spot, per GPU-hour (the packaged pricing table)
ON_DEMAND_PRICE = 4.6016 / 4


def pods(tmp_path: Path, *rows: str, name: str = "pods.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


@pytest.fixture
def small(tmp_path: Path) -> Path:
    return pods(
        tmp_path,
        "p0,8000,16384,1,1000,,BE,Succeeded,0,36010,10",  # 10 h on one GPU
        "p1,8000,16384,1,500,,BE,Failed,100,7300,100",  # 2 h on half a GPU
        "p2,8000,16384,2,1000,,BE,Running,200,3800,200",  # 1 h on two GPUs
        "p3,8000,16384,1,1000,,LS,Running,0,3600,0",  # latency-sensitive: not training
        "p4,8000,16384,0,0,,BE,Running,0,3600,0",  # no GPU
        "p5,8000,16384,1,1000,,BE,Pending,0,3600,",  # never scheduled
        "p6,8000,16384,1,1000,,BE,Failed,0,50,50",  # zero run time
    )


def test_best_effort_pods_are_the_training_jobs(small: Path) -> None:
    jobs, skipped = read_pods(small)
    assert [j.name for j in jobs] == ["p0", "p1", "p2"]
    assert [j.gpus for j in jobs] == [1.0, 0.5, 2.0]
    assert [j.work_seconds for j in jobs] == [36000, 7200, 3600]
    assert skipped == {"no GPU": 1, "unusable times": 2}
    everything, _ = read_pods(small, include_all=True)
    assert [j.name for j in everything] == ["p0", "p1", "p2", "p3"]


def test_without_interruptions_every_job_runs_on_spot_at_the_spot_price(small: Path) -> None:
    result = simulate_training(small, load_config(None), ReplayOptions(interruptions_per_month=0.0))
    work_gpu_hours = 10 + 0.5 * 2 + 2 * 1
    assert result.jobs == 3
    assert result.interruptions == 0 and result.fallbacks == 0 and result.deadline_misses == 0
    assert result.spot_gpu_seconds == pytest.approx(work_gpu_hours * 3600)
    assert result.cost_usd == pytest.approx(SPOT_PRICE * work_gpu_hours)
    assert result.on_demand_cost_usd == pytest.approx(ON_DEMAND_PRICE * work_gpu_hours)
    assert result.savings_ratio == pytest.approx(1 - SPOT_PRICE / ON_DEMAND_PRICE)


def test_spot_disabled_costs_exactly_the_on_demand_baseline(small: Path) -> None:
    result = simulate_training(small, load_config(None), ReplayOptions(spot=False))
    assert result.spot_gpu_seconds == 0
    assert result.cost_usd == pytest.approx(result.on_demand_cost_usd)
    assert result.savings_ratio == pytest.approx(0.0)


def test_frequent_interruptions_trigger_fallbacks_through_the_core(small: Path) -> None:
    settings = ReplayOptions(interruptions_per_hour=0.5, max_interruptions=1, seed=3)
    result = simulate_training(small, load_config(None), settings)
    assert result.interruptions >= 1
    assert result.fallbacks >= 1
    # Lost work and restarts are paid for: more GPU-hours held than the work needs.
    assert result.gpu_seconds > result.work_gpu_seconds
    assert result.spot_gpu_seconds < result.gpu_seconds


def test_without_fallback_jobs_stay_on_spot_however_often_interrupted(small: Path) -> None:
    settings = ReplayOptions(interruptions_per_hour=1.0, fallback=False, seed=1)
    result = simulate_training(small, load_config(None), settings)
    assert result.fallbacks == 0
    assert result.interruptions > 0
    assert result.spot_gpu_seconds == pytest.approx(result.gpu_seconds)


def test_a_seed_reproduces_a_run_and_another_seed_differs(tmp_path: Path) -> None:
    rows = [
        f"j{i},1000,1024,1,1000,,BE,Succeeded,{i * 60},{i * 60 + 20000},{i * 60}" for i in range(40)
    ]
    path = pods(tmp_path, *rows)
    config = load_config(None)

    def run(seed: int) -> dict[str, object]:
        settings = ReplayOptions(seed=seed, interruptions_per_hour=0.3)
        data = simulate_training(path, config, settings).to_json()
        data.pop("cpu_seconds")
        return data

    first = run(7)
    assert first == run(7)
    assert first != run(8)


def test_a_pod_larger_than_every_node_is_counted_not_placed(tmp_path: Path) -> None:
    path = pods(tmp_path, "big,1000,1024,16,1000,,BE,Running,0,3600,0")
    result = simulate_training(path, load_config(None))
    assert result.jobs == 0
    assert result.skipped == {"no allowed pool fits": 1}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (["p0,1,1,one,1000,,BE,Running,0,10,0"], ":2: column 'num_gpu': not a number: 'one'"),
        (
            ["p0,1,1,1,1000,,BE,Running,0,10,0", "p1,1,1,1,1000,,BE,Running,0,1x,0"],
            ":3: column 'deletion_time': not a number: '1x'",
        ),
        (["p0,1,1,1,1000,,BE,Running,0,10"], ":2: 10 fields, the header has 11"),
        (["p0,1,1,1,2000,,BE,Running,0,10,0"], ":2: column 'gpu_milli': 2000 is not in"),
    ],
)
def test_malformed_rows_are_named_by_line_and_column(
    tmp_path: Path, rows: list[str], message: str
) -> None:
    with pytest.raises(TraceError, match=message.replace("(", r"\(")):
        read_pods(pods(tmp_path, *rows))


def test_a_file_without_the_pod_list_columns_says_which_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "binned.csv"
    path.write_text("timestamp,requests\n0,5\n")
    with pytest.raises(TraceError, match=r":1: missing column\(s\) name, num_gpu, qos"):
        read_pods(path)
    with pytest.raises(TraceError, match="cannot read pod trace"):
        read_pods(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(TraceError, match="empty file"):
        read_pods(tmp_path / "empty.csv")


def test_the_command_prints_the_promised_json(
    small: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", "training", str(small), "--json", "--seed", "4"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    for key in (
        "cost_usd",
        "on_demand_cost_usd",
        "savings_ratio",
        "deadline_misses",
        "interruptions",
        "fallbacks",
        "jobs",
        "skipped",
        "gpu_hours",
        "cpu_seconds",
    ):
        assert key in data, key
    assert data["jobs"] == 3 and data["skipped"] == 3 and data["seed"] == 4
    assert 0 < data["savings_ratio"] < 1


def test_the_command_prints_a_table_and_fails_cleanly(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", "training", str(small)]) == 0
    out = capsys.readouterr().out
    assert "savings" in out and "deadline misses" in out
    bad = pods(tmp_path, "p0,1,1,x,1000,,BE,Running,0,10,0", name="bad.csv")
    assert main(["simulate", "training", str(bad)]) == 2
    assert "bad.csv:2: column 'num_gpu'" in capsys.readouterr().err


def test_the_real_alibaba_trace() -> None:
    result = simulate_training(trace_path(REAL_TRACE), load_config(None), ReplayOptions())
    assert result.jobs > 2000
    assert sum(result.skipped.values()) > 0
    assert result.deadline_misses == 0
    # The spot/on-demand price ratio bounds the savings; interruptions only reduce them.
    assert 0.5 < result.savings_ratio <= 1 - SPOT_PRICE / ON_DEMAND_PRICE + 1e-9
    assert result.cpu_seconds < 30
