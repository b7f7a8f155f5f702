"""The Prometheus server of the local cluster: its configuration and command line."""

from __future__ import annotations

from pathlib import Path

import yaml

SCRAPE_INTERVAL = "5s"


def write_config(path: Path, *, listen: str) -> None:
    """A configuration that scrapes Prometheus itself (more targets come later)."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]},
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def argv(binary: Path, *, config: Path, data_dir: Path, listen: str) -> list[str]:
    return [
        str(binary),
        f"--config.file={config}",
        f"--storage.tsdb.path={data_dir}",
        f"--web.listen-address={listen}",
        "--web.enable-lifecycle",
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
    ]
