"""The operator config: defaults, prices from the table, errors that say how to fix."""

import pytest

from gpufinops.cli.main import main
from gpufinops.config import ConfigError, load_config, parse_config


def test_default_config_prices_every_pool() -> None:
    config = load_config(None)
    names = [p.name for p in config.node_pools]
    assert names == ["a100-on-demand", "l4-spot", "l4-on-demand"]
    spot = config.pool("l4-spot")
    assert spot is not None and spot.gpus_per_node == 4
    assert spot.gpu_hourly_price_usd == pytest.approx(1.93 / 4)
    on_demand = config.pool("l4-on-demand")
    assert on_demand is not None and on_demand.hourly_price_usd == pytest.approx(4.6016)


def test_explicit_price_overrides_the_table() -> None:
    config = parse_config(
        {
            "nodePools": [
                {
                    "name": "h100",
                    "selector": {"pool": "h100"},
                    "instanceType": "p5.48xlarge",
                    "capacityType": "spot",
                    "hourlyPriceUSD": 20.0,
                }
            ]
        }
    )
    pool = config.pool("h100")
    assert pool is not None and pool.gpu_hourly_price_usd == pytest.approx(2.5)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {
                "nodePools": [
                    {
                        "name": "x",
                        "selector": {"a": "b"},
                        "instanceType": "weird.big",
                        "capacityType": "spot",
                    }
                ]
            },
            "gpusPerNode is required",
        ),
        (
            {
                "nodePools": [
                    {
                        "name": "x",
                        "selector": {"a": "b"},
                        "instanceType": "g5.xlarge",
                        "capacityType": "spot",
                    }
                ]
            },
            "hourlyPriceUSD is required",
        ),
        (
            {
                "nodePools": [
                    {
                        "name": "x",
                        "selector": {"a": "b"},
                        "instanceType": "g5.xlarge",
                        "capacityType": "preemptible",
                    }
                ]
            },
            "nodePools.0.capacityType",
        ),
        ({"prometheus": {"url": "localhost:9090"}}, "prometheus.url"),
        (
            {
                "nodePools": [
                    {
                        "name": "x",
                        "selector": {"a": "b"},
                        "instanceType": "g6.xlarge",
                        "capacityType": "spot",
                    }
                ]
                * 2
            },
            "repeated: x",
        ),
        ({"promethus": {}}, "promethus: Extra inputs are not permitted"),
        ([1, 2], "YAML mapping"),
    ],
)
def test_bad_config_names_the_field(data: object, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert needle in str(err.value)


def test_config_check_command(tmp_path, capsys) -> None:
    assert main(["config", "check"]) == 0
    assert "l4-spot: g6.12xlarge spot" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodePools: [{name: x}]\n")
    assert main(["config", "check", str(bad)]) == 1
    assert "nodePools.0.selector" in capsys.readouterr().err
