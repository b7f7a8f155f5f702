"""docs/cli.md, generated from the argument parser: every command and flag with its help,
so the reference cannot drift from what the commands accept."""

import argparse
from collections.abc import Iterator


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield (*path, name), sub, helps.get(name, "")
                yield from _commands(sub, (*path, name))


def _flag(action: argparse.Action) -> str:
    names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest.upper()}`"
    if (
        action.option_strings
        and action.nargs != 0
        and not isinstance(action, argparse._StoreConstAction | argparse._StoreTrueAction)
    ):
        names += f" {action.metavar or action.dest.upper()}"
    return names


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    text = parser._get_formatter()._expand_help(action) if action.help else ""
    if action.choices and not isinstance(action, argparse._SubParsersAction):
        text += (" " if text else "") + "(one of: " + ", ".join(map(str, action.choices)) + ")"
    return " ".join(text.split()).replace("|", "\\|")


def cli_markdown(parser: argparse.ArgumentParser) -> str:
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argument parser by `gpufinops reference --cli`; do not edit.",
        "`gpufinops COMMAND --help` prints the same.",
        "",
    ]
    for path, sub, summary in _commands(parser):
        actions = [
            a for a in sub._actions
            if not isinstance(a, argparse._HelpAction | argparse._SubParsersAction)
        ]  # fmt: skip
        lines += [f"## gpufinops {' '.join(path)}", ""]
        if summary:
            lines += [summary[0].upper() + summary[1:] + ".", ""]
        if not actions:
            continue
        lines += ["| argument | meaning |", "|---|---|"]
        lines += [f"| {_flag(a)} | {_help(sub, a)} |" for a in actions]
        lines.append("")
    top = [
        a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)
    ]
    if top:
        lines += ["## gpufinops", "", "| argument | meaning |", "|---|---|"]
        lines += [f"| {_flag(a)} | {_help(parser, a)} |" for a in top]
        lines.append("")
    return "\n".join(lines)
