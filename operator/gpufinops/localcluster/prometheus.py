"""The Prometheus server of the local cluster: its configuration and command line."""

from __future__ import annotations

from pathlib import Path

import yaml

SCRAPE_INTERVAL = "5s"
RETENTION = "10d"
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
        # Long enough for a forecaster's week of history, backfilled (the demo's).
        f"--storage.tsdb.retention.time={RETENTION}",
        "--log.level=warn",
    ]


def promtool_for(prometheus: Path) -> Path:
    """The promtool shipped with ``prometheus`` (beside it, or Debian's)."""
    beside = prometheus.with_name("promtool")
    return beside if beside.exists() else Path("/usr/bin/promtool")


def create_blocks(binary: Path, data_dir: Path, openmetrics: str) -> None:
    """Write ``openmetrics`` history into ``data_dir`` as TSDB blocks, with the promtool
    shipped beside Prometheus (Debian's package has both)."""
    import subprocess

    promtool = promtool_for(binary)
    data_dir.mkdir(parents=True, exist_ok=True)
    source = data_dir.parent / "backfill.om"
    source.write_text(openmetrics)
    try:
        done = subprocess.run(
            [str(promtool), "tsdb", "create-blocks-from", "openmetrics", "--quiet",
             str(source), str(data_dir)],
            capture_output=True, text=True, timeout=600, check=False,
        )  # fmt: skip
    finally:
        source.unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"promtool tsdb create-blocks-from openmetrics: {done.stderr.strip()}")
