"""The Prometheus server of the local cluster: its configuration and command line."""

from __future__ import annotations

from pathlib import Path

import yaml

SCRAPE_INTERVAL = "5s"
TARGETS_DIR = "targets"
"""Next to the config: ``*.json`` file_sd target lists that local tools drop in."""


def targets_dir(config: Path) -> Path:
    return config.parent / TARGETS_DIR


def write_config(path: Path, *, listen: str) -> None:
    """A configuration that scrapes Prometheus itself and every target listed in
    ``targets/*.json`` (file service discovery, re-read every few seconds), so a
    process started later (the demo's exporter) is scraped without a restart.
    Target labels are honoured: exporters label series by namespace and pod."""
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [listen]}]},
            {
                "job_name": "local-targets",
                "honor_labels": True,
                "file_sd_configs": [
                    {"files": [str(targets_dir(path) / "*.json")], "refresh_interval": "5s"}
                ],
            },
        ],
    }
    targets_dir(path).mkdir(parents=True, exist_ok=True)
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
