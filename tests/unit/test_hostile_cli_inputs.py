"""Bad input files on the command line: a one-line error naming the file (and the line,
where there is one), exit code 2, and never a Python traceback.

Covers the trace readers behind ``gpufinops simulate inference|training`` and
``gpufinops forecast backtest``, and the manifest reader of ``gpufinops estimate``.
"""

import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.cli.main import main
from gpufinops.sim.traces import TraceError, read_trace
from gpufinops.sim.training import read_pods

POD_HEADER = "name,qos,num_gpu,gpu_milli,creation_time,scheduled_time,deletion_time\n"

# Each command with a valid file's text, and a row that breaks it.
COMMANDS: dict[str, tuple[list[str], str, str]] = {
    "simulate-inference": (["simulate", "inference"], "timestamp,requests\n0,4\n60,5\n", "120,x\n"),
    "forecast-backtest": (["forecast", "backtest"], "timestamp,value\n0,1.5\n15,2\n", "30,-1\n"),
    "simulate-training": (
        ["simulate", "training"],
        POD_HEADER + "a,BE,1,1000,0,10,3610\nb,BE,2,500,5,20,7220\n",
        "c,BE,one,1000,0,1,2\n",
    ),
}


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], argv: list[str], path: Path) -> str:
    """Run a command that must refuse ``path``; return its one error line."""
    code, _, err = run(capsys, argv)
    assert code == 2, err
    assert err.startswith("error: "), err
    assert str(path) in err, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err  # one line, not a dump
    return err


@pytest.fixture(params=sorted(COMMANDS))
def command(request: pytest.FixtureRequest) -> tuple[list[str], str, str]:
    return COMMANDS[request.param]


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_bad_row_is_named_by_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[list[str], str, str]
) -> None:
    argv, good, bad = command
    path = _write(tmp_path, "t.csv", (good + bad).encode())
    err = refused(capsys, [*argv, str(path)], path)
    assert f"{path}:4: " in err


def test_crlf_line_endings_read_like_lf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[list[str], str, str]
) -> None:
    argv, good, bad = command
    crlf = _write(tmp_path, "crlf.csv", (good + bad).replace("\n", "\r\n").encode())
    assert f"{crlf}:4: " in refused(capsys, [*argv, str(crlf)], crlf)
    # A UTF-8 byte-order mark (Excel's "CSV UTF-8") reads the same as none.
    bom = _write(tmp_path, "bom.csv", b"\xef\xbb\xbf" + (good + bad).encode())
    assert f"{bom}:4: " in refused(capsys, [*argv, str(bom)], bom)


def _in_first_row(text: str, extra: str) -> str:
    """``text`` with ``extra`` appended to the last field of its first data row."""
    lines = text.split("\n")
    lines[1] += extra
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("name", "mangle", "where", "says"),
    [
        ("latin1.csv", lambda text: text.replace("\n", "\ncaf\xe9,", 1), ":2: ", "not UTF-8"),
        ("utf16.csv", lambda text: text, ":1: ", "UTF-16"),
        ("garbage.csv", None, ":1: ", ""),
        ("empty.csv", lambda text: "", "", "empty file"),
        ("header-only.csv", lambda text: text.split("\n")[0] + "\n", "", "no data rows"),
        ("old-mac.csv", lambda text: text.replace("\n", "\r"), ":1: ", ""),
        ("nul.csv", lambda text: _in_first_row(text, "\x00"), ":2: ", ""),
        ("wide.csv", lambda text: text + "1," + "9" * 200_000 + "\n", ":4: ", ""),
        ("long-line.csv", lambda text: text + "x" * (2 << 20), ":4: ", "longer than"),
    ],
)
def test_unreadable_files(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: tuple[list[str], str, str],
    name: str,
    mangle: Callable[[str], str] | None,
    where: str,
    says: str,
) -> None:
    argv, good, _ = command
    if mangle is None:
        data = bytes(range(256)) * 64  # binary: control bytes on line 1, then invalid UTF-8
    elif name == "utf16.csv":
        data = good.encode("utf-16")  # with its byte-order mark
    else:
        data = mangle(good).encode("latin-1" if name == "latin1.csv" else "utf-8")
    if argv[1] == "training" and says == "no data rows":
        says = ""  # a pod list without pods is an empty simulation, not an error
        path = _write(tmp_path, name, data)
        code, out, err = run(capsys, [*argv, str(path), "--json"])
        assert code == 0 and '"jobs": 0' in out, err
        return
    path = _write(tmp_path, name, data)
    err = refused(capsys, [*argv, str(path)], path)
    assert f"{path}{where}" in err
    assert says in err


def test_a_missing_file_or_a_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[list[str], str, str]
) -> None:
    argv, _, _ = command
    for path in (tmp_path / "absent.csv", tmp_path):
        refused(capsys, [*argv, str(path)], path)


_MEASURE = """
import resource, sys
from gpufinops.cli.main import main
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(["forecast", "backtest", sys.argv[1]])
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(code, grown * 1024)
"""


def test_a_50_mb_trace_is_streamed_not_loaded(tmp_path: Path) -> None:
    """50 MB of rows with a bad last row: the reader goes through it all in bounded memory
    (8 bytes per parsed cell, not the file nor a Python object per row) and names the line.
    Rows carry a wide ignored column so the test stays quick (about a second)."""
    path = tmp_path / "huge.csv"
    note = "n" * 200
    rows = 0
    with path.open("w") as f:
        f.write("timestamp,requests,note\n")
        while f.tell() < 50 * 1024 * 1024:
            f.write("".join(f"{i},{i % 7},{note}\n" for i in range(rows, rows + 10_000)))
            rows += 10_000
        f.write("oops,1,x\n")
    size = path.stat().st_size
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{path}:{rows + 2}: timestamp 'oops'" in done.stderr
    assert "Traceback" not in done.stderr
    code, grown = (int(word) for word in done.stdout.split())
    assert code == 2
    # The old reader kept a tuple per row: about 35 MB here; the file itself is 50 MB.
    assert grown < size / 5, f"grew {grown / 1e6:.0f} MB reading a {size / 1e6:.0f} MB file"
    assert time.perf_counter() - started < 60


def test_garbage_that_fails_early_does_not_read_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "huge-garbage.bin"
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.seek(50 * 1024 * 1024)
        f.write(b"\0")
    started = time.perf_counter()
    for argv in (["simulate", "inference"], ["simulate", "training"]):
        refused(capsys, [*argv, str(path)], path)
    assert time.perf_counter() - started < 5


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    path = _write(tmp_path, "latin1.csv", "timestamp,requests\n0,1\ncaf\xe9,2\n".encode("latin-1"))
    done = subprocess.run(
        [sys.executable, "-m", "gpufinops", "simulate", "inference", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert re.fullmatch(rf"error: {re.escape(str(path))}:3: not UTF-8 text .*\n", done.stderr)


# ---------------------------------------------------------------- gpufinops estimate


MANIFEST = """\
apiVersion: gpufinops.dev/v1alpha1
kind: AIWorkload
metadata: {name: nb}
spec:
  type: Experiment
  costAllocation: {team: research}
  experiment:
    targetRef: {kind: Job, name: j}
    maxLifetimeSeconds: 7200
"""


@pytest.mark.parametrize(
    ("name", "data", "where"),
    [
        (
            "latin1.yaml",
            MANIFEST.replace("research", "recherche-\xe9t\xe9").encode("latin-1"),
            ":6:",
        ),
        ("garbage.yaml", bytes(range(256)) * 16, ":2:"),  # bytes 0-9, then line 2 has 0x80
        ("nul.yaml", MANIFEST.replace("metadata", "\x00metadata").encode(), ":3:"),
        ("broken.yaml", (MANIFEST + "  idle: [\n").encode(), ":11:"),
        ("crlf-broken.yaml", (MANIFEST + "  idle: [\n").replace("\n", "\r\n").encode(), ":11:"),
        ("deep.yaml", b"[" * 100_000, ""),
        ("list.yaml", b"- 1\n- 2\n", ""),
        ("bad-spec.yaml", MANIFEST.replace("7200", "soon").encode(), ""),
    ],
)
def test_estimate_refuses_unreadable_manifests(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes, where: str
) -> None:
    path = _write(tmp_path, name, data)
    err = refused(capsys, ["estimate", "-f", str(path)], path)
    assert f"{path}{where}" in err
    if name == "bad-spec.yaml":
        assert "spec.experiment.maxLifetimeSeconds" in err


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("crlf.yaml", MANIFEST.replace("\n", "\r\n").encode()),
        ("bom.yaml", b"\xef\xbb\xbf" + MANIFEST.encode()),
        ("utf16.yaml", MANIFEST.encode("utf-16")),  # YAML allows UTF-16 with a BOM
    ],
)
def test_estimate_reads_every_encoding_yaml_allows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, data: bytes
) -> None:
    path = _write(tmp_path, name, data)
    code, out, err = run(capsys, ["estimate", "-f", str(path), "--format", "json"])
    assert code == 0, err
    assert '"name": "nb"' in out


def test_estimate_of_an_empty_file_finds_nothing_to_estimate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path, "empty.yaml", b"")
    code, _, err = run(capsys, ["estimate", "-f", str(path)])
    assert code == 0 and "no AIWorkload manifests found" in err


# ---------------------------------------------------------------- generated files

_HEADERS = [
    "timestamp,requests",
    "timestamp,value",
    "timestamp,prompt_tokens,completion_tokens",
    "time,requests,extra",
    POD_HEADER.strip(),
]
_CELLS = [
    "0",
    "1",
    "-1",
    "1e9",
    "1e999",
    "nan",
    "inf",
    "",
    " ",
    "2024-05-12T00:00:00Z",
    '"',
    "x",
    "0.5",
    "BE",
    "LS",
    "1000",
    "1e-300",
    "\x00",
    "é",
    "\r",
    '"a,b"',
]


@st.composite
def csv_files(draw: st.DrawFn) -> bytes:
    header = draw(st.sampled_from(_HEADERS))
    width = header.count(",") + 1
    rows = draw(
        st.lists(
            st.lists(
                st.sampled_from(_CELLS) | st.text(max_size=6),
                min_size=width - 1,
                max_size=width + 1,
            ).map(",".join),
            max_size=8,
        )
    )
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join([header, *rows]) + draw(st.sampled_from(["", newline]))
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])), "replace")


@settings(derandomize=True, max_examples=300, deadline=None)
@given(data=csv_files() | st.binary(max_size=300))
def test_any_file_is_a_trace_or_a_trace_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "t.csv"
        path.write_bytes(data)
        for reader in (read_trace, read_pods):
            try:
                reader(path)
            except TraceError as exc:
                assert str(exc).startswith(f"{path}:"), exc  # names the file, and the line
