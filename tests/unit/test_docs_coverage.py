"""Every command-line flag and every chart value is documented: docs/cli.md is the
parser's own reference (regenerated, never edited), and each value of the chart has a
row in docs/deploy.md (or the chart's README)."""

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from gpufinops.cli.main import build_parser, main
from gpufinops.cli.reference import cli_markdown

ROOT = Path(__file__).resolve().parents[2]
CLI_DOC = ROOT / "docs" / "cli.md"
VALUES = ROOT / "helm" / "gpufinops" / "values.yaml"
VALUE_DOCS = (ROOT / "docs" / "deploy.md", ROOT / "helm" / "gpufinops" / "README.md")


def _actions(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.Action]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield path, action


def test_the_cli_reference_is_the_parsers_own(capsys) -> None:
    generated = cli_markdown(build_parser())
    assert CLI_DOC.read_text() == generated, (
        "docs/cli.md is stale: regenerate it with `gpufinops reference --cli > docs/cli.md`"
    )
    assert main(["reference", "--cli"]) == 0
    assert capsys.readouterr().out == generated


def test_every_flag_is_in_the_reference_with_a_meaning() -> None:
    text = CLI_DOC.read_text()
    for path, action in _actions(build_parser()):
        where = " ".join(("gpufinops", *path))
        for option in action.option_strings:
            assert f"`{option}`" in text, f"{where} {option} is not in docs/cli.md"
        assert action.help or action.choices, f"{where} {action.dest} has no help text"


def _leaves(values: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _leaves(value, path + ".")
        else:
            yield path


def _documented(path: str, text: str) -> bool:
    """The value or one of its sections is named in backticks (`a.b.c`, `a.b.*`, `a.b`).

    ``config`` is the operator's config file, passed through as written: its keys
    are docs/config.md's (tests/unit/test_docs_catalogue.py)."""
    parts = path.split(".")
    if parts[0] == "config":
        return True
    for end in range(len(parts), 0, -1):
        section = ".".join(parts[:end])
        if f"`{section}`" in text or f"`{section}.*`" in text:
            return True
    return False


def test_every_chart_value_is_documented() -> None:
    text = "\n".join(p.read_text() for p in VALUE_DOCS)
    values = yaml.safe_load(VALUES.read_text())
    missing = [p for p in _leaves(values) if not _documented(p, text)]
    assert not missing, f"chart values missing from docs/deploy.md's table: {missing}"
