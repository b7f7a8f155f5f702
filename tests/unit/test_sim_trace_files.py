"""Reading trace files: both formats, both timestamp styles, and clear errors."""

from pathlib import Path

import numpy as np
import pytest

from gpufinops.sim.traces import (
    TraceError,
    from_rate_samples,
    parse_timestamp,
    peak_rate,
    read_trace,
)


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_binned_spreads_each_bin_evenly_over_its_seconds(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,requests\n0,10\n5,0\n10,20\n")
    trace = read_trace(path)
    assert trace.format == "binned" and trace.source_step == 5
    assert trace.seconds == 15
    np.testing.assert_allclose(trace.requests, [2] * 5 + [0] * 5 + [4] * 5)
    np.testing.assert_array_equal(trace.work, trace.requests)
    assert not trace.tokens


def test_iso_and_numeric_timestamps_give_the_same_trace(tmp_path: Path) -> None:
    iso = read_trace(
        write(tmp_path, "timestamp,requests\n2024-05-12T00:00:00Z,10\n2024-05-12T00:00:10Z,30\n")
    )
    start = parse_timestamp("2024-05-12T00:00:00Z")
    numeric = read_trace(
        write(tmp_path, f"timestamp,requests\n{start},10\n{start + 10},30\n", "n.csv")
    )
    assert iso.start == numeric.start == start
    np.testing.assert_allclose(iso.requests, numeric.requests)
    assert parse_timestamp("2024-05-12T02:00:00+02:00") == start
    assert parse_timestamp("2024-05-12T00:00:00") == start  # naive means UTC


def test_missing_bins_count_as_no_requests(tmp_path: Path) -> None:
    trace = read_trace(write(tmp_path, "timestamp,requests\n0,4\n2,6\n6,2\n"))
    np.testing.assert_allclose(trace.requests, [2, 2, 3, 3, 0, 0, 1, 1])


def test_per_request_trace_counts_arrivals_and_weighs_work_by_tokens(tmp_path: Path) -> None:
    text = (
        "timestamp,prompt_tokens,completion_tokens\n"
        "2023-11-16T18:17:03.10Z,100,10\n"
        "2023-11-16T18:17:03.90Z,100,10\n"
        "2023-11-16T18:17:05.50Z,1000,290\n"
    )
    trace = read_trace(write(tmp_path, text))
    assert trace.format == "requests" and trace.tokens
    np.testing.assert_allclose(trace.requests, [2, 0, 1])
    # cost = 10 + completion + 0.1 x prompt: 30, 30 and 400 tokens; mean 153.33
    np.testing.assert_allclose(trace.work, [60 / (460 / 3), 0, 400 / (460 / 3)])
    assert trace.work.sum() == pytest.approx(trace.requests.sum())


def test_per_request_rows_need_not_be_sorted(tmp_path: Path) -> None:
    text = "timestamp,prompt_tokens,completion_tokens\n3.5,1,1\n0.2,1,1\n1.0,1,1\n"
    trace = read_trace(write(tmp_path, text))
    np.testing.assert_allclose(trace.requests, [1, 1, 0, 1])


def test_rate_samples_are_summed_per_timestamp_and_held(tmp_path: Path) -> None:
    text = (
        "timestamp_anon,value,container_ip,request_type\n"
        "100,1.0,a,Generative Requests\n"
        "100,2.0,b,Generative Requests\n"
        "100,5.0,,API Requests\n"
        "104,0.5,a,Generative Requests\n"
    )
    path = write(tmp_path, text)
    trace = read_trace(path, {"request_type": "Generative Requests"})
    assert trace.format == "rate" and trace.start == 100
    np.testing.assert_allclose(trace.requests, [3, 3, 3, 3, 0.5, 0.5, 0.5, 0.5])
    everything = read_trace(path)
    assert everything.requests[0] == pytest.approx(8.0)


def test_rate_samples_from_a_query_hold_at_most_the_lookback() -> None:
    stamps = np.array([0.0, 15.0, 1000.0])
    trace = from_rate_samples("q", stamps, np.array([2.0, np.nan, 1.0]), step=15)
    # the NaN sample is a gap; the 0 s sample holds 300 s, not until 1000 s
    assert trace.requests[:300].sum() == pytest.approx(600.0)
    assert trace.requests[300:1000].sum() == 0
    assert trace.requests[1000:].sum() == pytest.approx(15.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("time_stamp,count\n1,2\n", "no timestamp column"),
        ("timestamp,foo\n1,2\n", "unknown trace header"),
        ("timestamp,requests\n", "no data rows"),
        ("timestamp,requests\n0,1\n10,x\n", "t.csv:3: requests 'x' is not a number"),
        ("timestamp,requests\n0,1\n10,-4\n", "t.csv:3: requests '-4' must be"),
        ("timestamp,requests\n0,1\nyesterday,4\n", "t.csv:3: timestamp 'yesterday' is neither"),
        ("timestamp,requests\n0,1\n10,2,3\n", "t.csv:3: 3 fields, the header has 2"),
        ("timestamp,requests\n0,1\n10,2\n10,3\n", "t.csv:4: timestamp 10 does not increase"),
        ("timestamp,requests\n0,1\n10,2\n25,3\n", "t.csv:4: timestamp 25 is not on the 10 s"),
        ("timestamp,requests\n0,1\n0.5,2\n", "finer than the 1 s"),
        ("timestamp,requests\n0,1\n9e12,2\n", "check the timestamps"),
        ("timestamp,prompt_tokens,completion_tokens\n1,10,\n", "t.csv:2: missing completion"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as err:
        read_trace(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_unknown_selection_column_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path, "timestamp,requests\n0,1\n")
    with pytest.raises(TraceError, match="no column 'kind'"):
        read_trace(path, {"kind": "x"})
    with pytest.raises(TraceError, match="cannot open"):
        read_trace(tmp_path / "absent.csv")


def test_binary_garbage_is_an_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "bin.csv"
    path.write_bytes(b"timestamp,requests\n0,1\n\xff\xfe\x00garbage\n")
    with pytest.raises(TraceError, match=r"bin\.csv"):
        read_trace(path)


def test_peak_rate_is_the_busiest_window_mean() -> None:
    values = np.array([0.0] * 100 + [3.0] * 30 + [1.0] * 100)
    assert peak_rate(values, 60) == pytest.approx((30 * 3 + 30 * 1) / 60)
    assert peak_rate(np.array([4.0, 2.0]), 60) == pytest.approx(3.0)
