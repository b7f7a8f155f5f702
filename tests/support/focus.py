"""Runs focus-validator (the FinOps Foundation's FOCUS checker, installed by
`make bootstrap` into .venv-focus) on an export."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-focus"
OVERRIDES = Path(__file__).with_name("focus-validator-overrides.yaml")


def validate(csv_file: Path) -> subprocess.CompletedProcess[str]:
    """The validator's verdict on ``csv_file`` against FOCUS 1.0, the newest rule set
    of its PyPI release (1.2 adds columns and allows more values; the export's 1.2
    columns are checked by the unit tests). It runs from its install directory: it
    reads its ISO 4217 list relative to the working directory."""
    tool = VENV / "bin" / "focus-validator"
    if not tool.exists():
        raise AssertionError(f"{tool} is missing: run `make bootstrap`")
    site = next((VENV / "lib").glob("python3*/site-packages"))
    return subprocess.run(
        [str(tool), "--data-file", str(csv_file), "--validate-version", "1.0",
         "--override-file", str(OVERRIDES)],
        cwd=site, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def conformant(csv_file: Path) -> bool:
    got = validate(csv_file)
    return got.returncode == 0 and "Validation succeeded" in got.stdout
