"""The demo's operator config and its own notes."""

import yaml

from gpufinops.config.model import load_config, parse_config
from gpufinops.demo.session import operator_config
from gpufinops.demo.snapshot import Notes


def test_the_operator_config_is_the_default_with_local_prometheus_and_real_idle_shutdown() -> None:
    config = parse_config(yaml.safe_load(operator_config("http://127.0.0.1:12345")))
    default = load_config(None)
    assert config.prometheus.url == "http://127.0.0.1:12345"
    assert [p.name for p in config.node_pools] == [p.name for p in default.node_pools]
    idle = config.idle_shutdown
    assert idle.enabled and not idle.dry_run and idle.idle_after_seconds == 60


def test_notes_keep_the_latest_twenty() -> None:
    notes = Notes()
    for i in range(25):
        notes.add(f"note {i}")
    latest = notes.latest()
    assert len(latest) == 20 and latest[-1].message == "note 24" and latest[0].object == "demo"
