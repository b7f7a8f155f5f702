"""Hostile operator configs: every one is accepted, or refused with a ConfigError that
names the field. Nothing else may escape ``parse_config`` or ``load_config``: the
operator (and ``gpufinops config check``) report a ConfigError and exit cleanly."""

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpufinops.cli.main import main
from gpufinops.config.model import ConfigError, OperatorConfig, load_config, parse_config

FAST = settings(
    derandomize=True,
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every section of the config, valid, so a mutation is the only thing wrong.
VALID: dict[str, Any] = {
    "prometheus": {"url": "http://prometheus:9090", "timeoutSeconds": 10},
    "cost": {"timezone": "Europe/Paris", "currency": "EUR", "intervalSeconds": 60},
    "alerting": {"webhookURL": "https://hooks.example/x", "timeoutSeconds": 5},
    "nodePools": [
        {
            "name": "l4-spot",
            "selector": {"gpufinops.dev/pool": "l4-spot"},
            "instanceType": "g6.12xlarge",
            "capacityType": "spot",
            "interruptionRatePerMonth": 0.1,
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "idleShutdown": {"enabled": True, "idleAfterSeconds": 900},
        },
        {
            "name": "custom",
            "selector": {"pool": "custom"},
            "instanceType": "my-own-box",
            "capacityType": "on-demand",
            "gpusPerNode": 2,
            "hourlyPriceUSD": 3.5,
            "gpuType": "L40S",
        },
    ],
    "idleShutdown": {
        "enabled": True,
        "idleAfterSeconds": 600,
        "gpuUtilizationBelowPercent": 5,
        "maxNodesPerInterval": 2,
        "maxPercent": 50,
        "schedule": [{"cron": "0 20 * * 1-5", "durationSeconds": 36000, "timezone": "UTC"}],
        "provider": "karpenter",
        "dryRun": False,
    },
}

NASTY = [
    None,
    True,
    -1,
    0,
    2**64,
    float("inf"),
    float("nan"),
    -0.0,
    "",
    "x" * 50_000,
    "\x00",
    "Mars/Base",
    "a b c d e",
    "0 0 31 2 *",
    "ftp://x",
    "🚀",
    [],
    {},
    [None],
    {"": None},
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(NASTY),
)
json_trees = st.recursive(
    scalars,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=15,
)

Path_ = tuple[str | int, ...]


def _paths(tree: Any, prefix: Path_ = ()) -> list[Path_]:
    out = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def mutated_configs(draw: st.DrawFn) -> tuple[dict[str, Any], Path_]:
    config = copy.deepcopy(VALID)
    path = draw(st.sampled_from(_paths(config)[1:]))
    parent: Any = config
    for part in path[:-1]:
        parent = parent[part]
    how = draw(st.sampled_from(["replace", "delete", "extra"]))
    if how == "replace":
        parent[path[-1]] = draw(json_trees)
    elif how == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k not in parent))
        # pricingFile is the one key that reads a file: keep it to names that are not one.
        if key != "pricingFile":
            parent[key] = draw(json_trees)
            path = (*path[:-1], key)
    return config, path


def _named(message: str, path: Path_) -> bool:
    """The message names the changed field, a section holding it, or a field inside it."""
    text = re.sub(r"\[(\d+)\]", r".\1", message)
    dotted = [".".join(str(p) for p in path[:n]) for n in range(len(path), 0, -1)]
    return any(name in text for name in dotted)


def _outcome(data: Any, path: Path_ | None = None) -> OperatorConfig | None:
    try:
        config = parse_config(data)
    except ConfigError as exc:
        message = str(exc)
        assert message.strip()
        if path is not None:
            assert _named(message, path), (path, message)
        return None
    for pool in config.node_pools:  # what every controller relies on once accepted
        assert pool.gpus_per_node is not None and pool.gpus_per_node > 0
        assert pool.hourly_price_usd is not None and pool.gpu_hourly_price_usd >= 0
    return config


def test_the_valid_config_is_valid() -> None:
    assert _outcome(copy.deepcopy(VALID)) is not None


@FAST
@given(data=json_trees)
def test_arbitrary_documents_are_refused_or_accepted(data: Any) -> None:
    _outcome(data)


@FAST
@given(data=st.dictionaries(st.sampled_from(sorted(VALID)), json_trees, max_size=6))
def test_arbitrary_sections_are_refused_or_accepted(data: dict[str, Any]) -> None:
    _outcome(data)


@settings(FAST, max_examples=400)
@given(case=mutated_configs())
def test_mutations_are_refused_naming_the_field(case: tuple[dict[str, Any], Path_]) -> None:
    data, path = case
    _outcome(data, path)


# ---------------------------------------------------------------- found by the properties


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"cost": {"timezone": "Mars/Base"}}, "cost.timezone"),
        ({"cost": {"timezone": "America"}}, "cost.timezone"),
        (
            {"idleShutdown": {"schedule": [{"cron": "0 0 31 2 *", "durationSeconds": 60}]}},
            "idleShutdown.schedule.0.cron",
        ),
        (
            {
                "idleShutdown": {
                    "schedule": [{"cron": "@daily", "durationSeconds": 9, "timezone": ""}]
                }
            },
            "idleShutdown.schedule.0.timezone",
        ),
        ({"prometheus": {"timeoutSeconds": float("inf")}}, "prometheus.timeoutSeconds"),
        ({"cost": {"intervalSeconds": float("nan")}}, "cost.intervalSeconds"),
    ],
)
def test_values_that_would_fail_later_are_refused_at_start(
    patch: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        parse_config(patch)


def test_unreadable_pricing_files_are_config_errors(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage")
    broken = tmp_path / "broken.yaml"
    broken.write_text("instances: [\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("instances: 3\n")
    for path in ("nul\x00byte", str(tmp_path), str(binary), str(broken), str(wrong)):
        with pytest.raises(ConfigError, match="pricingFile"):
            parse_config({"pricingFile": path})


def test_config_files_in_other_encodings_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = {
        "latin1.yaml": "cost:\n  currency: '€ café'\n".encode("latin-1", errors="replace"),
        "utf16.yaml": "cost:\n  currency: EUR\n".encode("utf-16"),
        "garbage.yaml": bytes(range(256)) * 4,
        "empty.yaml": b"",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        if name == "empty.yaml":
            assert load_config(path).node_pools == []  # empty means all defaults
            continue
        with pytest.raises(ConfigError, match=re.escape(str(path))):
            load_config(path)
        assert main(["config", "check", str(path)]) == 1
        _, err = capsys.readouterr()
        assert err.startswith("error: ") and "Traceback" not in err
