"""Tables and the progress bar: plain, stable text wherever the output is not a terminal."""

import io

import pytest

from gpufinops.sim.terminal import Column, ProgressBar, console, text_table

COLUMNS = [Column("name"), Column("GPU-h", numeric=True, footer="12.5"), Column("note")]
ROWS = [["a", "10.0", "first"], ["longer-name", "2.5", ""]]


class Terminal(io.StringIO):
    """A stream that says it is a TTY."""

    def isatty(self) -> bool:
        return True


def test_a_table_for_a_pipe_is_plain_aligned_text() -> None:
    text = text_table(COLUMNS, ROWS, stream=io.StringIO())
    assert text.splitlines() == [
        "name         GPU-h  note",
        "-------------------------",
        "a             10.0  first",
        "longer-name    2.5",
        "-------------------------",
        "              12.5",
    ]


def test_without_footers_there_is_no_closing_rule() -> None:
    text = text_table([Column("x"), Column("y", numeric=True)], [["a", "1"]], stream=io.StringIO())
    assert text.splitlines() == ["x  y", "----", "a  1"]


def test_the_environment_does_not_change_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    before = text_table(COLUMNS, ROWS, stream=io.StringIO())
    for name, value in {"COLUMNS": "20", "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}.items():
        monkeypatch.setenv(name, value)
    assert text_table(COLUMNS, ROWS, stream=io.StringIO()) == before
    assert "\x1b" not in before


def test_long_rows_stay_on_one_line() -> None:
    message = "scale down: " + "idle GPUs " * 30
    rows = [["ns/" + "w" * 120, message]]
    text = text_table([Column("workload"), Column("why")], rows, stream=io.StringIO())
    assert len(text.splitlines()) == 3
    assert message.rstrip() in text


def test_cells_are_text_not_markup() -> None:
    cells = ["[bold]team[/bold]", ":smile:", "[link=x]y"]
    text = text_table([Column("a"), Column("b"), Column("c")], [cells], stream=io.StringIO())
    assert text.splitlines()[-1] == "[bold]team[/bold]  :smile:  [link=x]y"


def test_a_terminal_gets_its_width_and_styles() -> None:
    assert console(Terminal()).is_terminal
    plain = console(io.StringIO())
    assert not plain.is_terminal and plain.color_system is None
    styled = text_table(COLUMNS, ROWS, stream=Terminal())
    assert "\x1b[" in styled  # headers in bold


def test_the_progress_bar_is_silent_off_a_terminal() -> None:
    stream = io.StringIO()
    bar = ProgressBar("simulate", stream)
    bar(0.5)
    bar.close()
    assert not bar.enabled and stream.getvalue() == ""


def test_the_progress_bar_ends_full_on_a_terminal() -> None:
    stream = Terminal()
    bar = ProgressBar("bench ramp", stream)
    for done in (0.0, 0.4, 1.0):
        bar(done)
    bar.close()
    bar.close()  # closing twice is harmless
    out = stream.getvalue()
    assert "bench ramp" in out and "100%" in out
    assert out.rindex("100%") < out.rindex("\n")  # the finished bar keeps its line
