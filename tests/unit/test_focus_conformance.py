"""The FOCUS export passes the FinOps Foundation's focus-validator, and the validator
run here is one that fails on a non-conformant file."""

import csv
import io
from pathlib import Path

from tests.support.focus import conformant, validate
from tests.unit.test_cost_report import FOCUS_OBJECTS, NOW

from gpufinops.cli.report import build_report, render_focus


def test_the_focus_export_passes_focus_validator(tmp_path: Path) -> None:
    export = tmp_path / "focus.csv"
    export.write_text(render_focus(build_report(FOCUS_OBJECTS, NOW, "Europe/Berlin")))
    got = validate(export)
    assert got.returncode == 0 and "Validation succeeded" in got.stdout, got.stdout + got.stderr


def test_the_validator_rejects_an_export_that_breaks_the_spec(tmp_path: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(render_focus(build_report(FOCUS_OBJECTS, NOW, "UTC")))))
    for breakage in ({"PricingCategory": "Spot"}, {"BillingCurrency": "DOLLARS"},
                     {"ServiceCategory": "GPUs"}, {"Tags": "team=search"}):  # fmt: skip
        broken = tmp_path / "broken.csv"
        with broken.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows([{**row, **breakage} for row in rows])
        assert not conformant(broken), breakage
