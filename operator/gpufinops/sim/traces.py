"""Traffic traces as arrivals per second, the one shape the service model consumes.

Three CSV shapes are read (see ``../shared/traces/README.md``):

- ``binned``: ``timestamp,requests``, one row per fixed-width bin. A bin's
  requests are spread evenly over its seconds: the source does not say when
  inside the bin they came, and any other spread would invent burstiness.
- ``requests``: ``timestamp,prompt_tokens,completion_tokens``, one row per
  request, counted per second. Tokens give each request a service *work*
  (see :data:`PREFILL_WEIGHT`) so long generations cost more than short ones.
- ``rate``: ``timestamp,value`` samples of a requests/s gauge (the raw Alibaba
  GenAI export, or a Prometheus range query), summed over the rows sharing a
  timestamp; each sample holds until the next one, as Prometheus' lookback does.

Timestamps are ISO-8601 (wall clock) or numbers (seconds, epoch or since the
start). A malformed file raises :class:`TraceError` naming the file and line,
because a silently skipped row would bias every number computed from it.
"""

import codecs
import csv
import math
from array import array
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Literal

import numpy as np

from gpufinops.core.forecast.series import FloatArray

if TYPE_CHECKING:
    from _csv import Reader

TraceFormat = Literal["binned", "requests", "rate"]

PREFILL_WEIGHT = 0.1
"""Work of one prompt token relative to one generated token.

Prefill runs batched through the whole prompt at once while decoding takes a
forward pass per token, so a prompt token costs the GPU roughly a tenth of a
generated one (vLLM throughput figures put prefill 10-20x ahead of decode).
"""

REQUEST_OVERHEAD_TOKENS = 10.0
"""Fixed work per request in generated-token units (scheduling, first token)."""

HOLD_SECONDS = 300.0
"""Longest a rate sample holds when the next one is late (Prometheus' lookback)."""

MAX_SECONDS = 400 * 86400
"""Longest trace accepted: a typo in a timestamp must not allocate gigabytes."""

MAX_LINE_BYTES = 1 << 20
"""Longest line accepted: a trace row is short, a longer line is some other file."""

_TIME_COLUMNS = ("timestamp", "timestamp_anon", "time")


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and the line."""


@dataclass(frozen=True)
class Trace:
    """Arrivals on a 1 s grid.

    ``requests[k]`` requests arrive in second ``k`` (fractional for binned
    sources); ``work[k]`` is their service demand in *mean requests*, so the two
    sums are equal and without tokens the arrays are the same.
    """

    name: str
    start: float
    """Epoch seconds of second 0 (for numeric timestamps, the number itself)."""
    requests: FloatArray
    work: FloatArray
    format: TraceFormat
    source_step: float | None = None
    """Width of the source bins or sampling interval; ``None`` for per-request traces."""
    tokens: bool = False
    filled_bins: int = 0
    """Missing bins filled by interpolation (``read_trace(fill_missing=True)``)."""

    def __post_init__(self) -> None:
        if self.requests.shape != self.work.shape or self.requests.ndim != 1:
            raise ValueError("requests and work must be 1-D arrays of the same length")

    @property
    def seconds(self) -> int:
        return int(self.requests.shape[0])

    @property
    def days(self) -> float:
        return self.seconds / 86400.0

    def head(self, seconds: int) -> "Trace":
        """The first ``seconds`` of the trace (for short runs and tests)."""
        n = max(1, min(self.seconds, int(seconds)))
        return Trace(
            self.name,
            self.start,
            self.requests[:n],
            self.work[:n],
            self.format,
            self.source_step,
            self.tokens,
            self.filled_bins,
        )


def parse_timestamp(raw: str) -> float:
    """Seconds from a number or an ISO-8601 string (``Z`` or an offset; naive means UTC)."""
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise ValueError(f"timestamp {raw!r} is not finite")
        return value
    if not text:
        raise ValueError("empty timestamp")
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"timestamp {raw!r} is neither a number nor ISO-8601") from None
    if stamp.tzinfo is None:
        return stamp.replace(tzinfo=UTC).timestamp()
    return stamp.timestamp()


def _number(raw: str | None, column: str) -> float:
    if raw is None or not raw.strip():
        raise ValueError(f"missing {column}")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{column} {raw!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{column} {raw!r} must be a finite number >= 0")
    return value


def detect_format(columns: Iterable[str]) -> tuple[TraceFormat, str]:
    """The trace format and timestamp column a header implies."""
    names = [c.strip() for c in columns]
    time_column = next((c for c in _TIME_COLUMNS if c in names), None)
    if time_column is None:
        raise ValueError(f"no timestamp column (expected one of {', '.join(_TIME_COLUMNS)})")
    if {"prompt_tokens", "completion_tokens"} <= set(names):
        return "requests", time_column
    if "requests" in names:
        return "binned", time_column
    if "value" in names:
        return "rate", time_column
    raise ValueError(
        f"unknown trace header {','.join(names)}: expected timestamp,requests (binned), "
        "timestamp,prompt_tokens,completion_tokens (per request) or timestamp,value (rate)"
    )


def text_lines(file: Path, handle: BinaryIO) -> Iterator[str]:
    """The file's lines decoded one at a time, so a decoding error names its own line
    and memory stays bounded by the longest line, whatever the file's size."""
    number = 0
    while raw := handle.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise TraceError(f"{file}:{number}: line longer than {MAX_LINE_BYTES} bytes")
        if number == 1:
            if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                raise TraceError(f"{file}:1: the file is UTF-16 text; save it as UTF-8")
            raw = raw.removeprefix(codecs.BOM_UTF8)
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TraceError(
                f"{file}:{number}: not UTF-8 text (byte {exc.start + 1} of the line: {exc.reason})"
            ) from None


@contextmanager
def csv_reader(file: Path) -> "Iterator[Reader]":
    """A CSV reader over a UTF-8 file (with or without a byte-order mark).

    Undecodable bytes and overlong lines raise :class:`TraceError` naming the
    line; so do CSV syntax errors, as ``csv.Error``, which the caller turns into
    a TraceError with the reader's ``line_num``.
    """
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise TraceError(f"{file}: cannot open: {exc.strerror or exc}") from None
    with handle:
        yield csv.reader(text_lines(file, handle))


def read_trace(
    path: Path | str, select: Mapping[str, str] | None = None, fill_missing: bool = False
) -> Trace:
    """Read a trace file; ``select`` keeps only rows whose columns have these values
    (e.g. ``{"request_type": "Generative Requests"}`` in the Alibaba GenAI export).

    A binned trace's missing bins are empty (no request), as the file says; with
    ``fill_missing`` each run of missing or zero bins is filled by linear interpolation
    between the bins around it (a gap in collection rather than in traffic)."""
    file = Path(path)
    with csv_reader(file) as reader:
        try:
            header = next(reader)
        except StopIteration:
            raise TraceError(f"{file}: empty file (expected a CSV header)") from None
        except csv.Error as exc:
            raise TraceError(f"{file}:1: not a CSV file: {exc}") from None
        try:
            fmt, time_column = detect_format(header)
        except ValueError as exc:
            raise TraceError(f"{file}:1: {exc}") from None
        names = [c.strip() for c in header]
        for column in select or {}:
            if column not in names:
                raise TraceError(f"{file}:1: no column {column!r} to select on")
        rows = _rows(file, reader, names, time_column, fmt, select or {})
    if fmt == "requests":
        return _from_requests(file, rows)
    if fmt == "binned":
        return _from_bins(file, rows, fmt, fill_missing)
    return _from_rates(file, rows)


@dataclass(frozen=True)
class _Rows:
    """The data rows, column by column (8 bytes a cell, not a Python object per row)."""

    lines: "np.ndarray[tuple[int], np.dtype[np.int64]]"
    stamps: FloatArray
    values: FloatArray
    completions: FloatArray
    """Completion tokens of each request (zeros for other formats)."""

    def __len__(self) -> int:
        return int(self.lines.shape[0])


def _rows(
    file: Path,
    reader: "Reader",
    names: list[str],
    time_column: str,
    fmt: TraceFormat,
    select: Mapping[str, str],
) -> _Rows:
    index = {name: i for i, name in enumerate(names)}
    t_at = index[time_column]
    value_column = {"binned": "requests", "requests": "prompt_tokens", "rate": "value"}[fmt]
    v_at = index[value_column]
    c_at = index.get("completion_tokens")
    chosen = [(index[k], v) for k, v in select.items()]
    lines, stamps, values, completions = array("q"), array("d"), array("d"), array("d")
    try:
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(names):
                raise TraceError(f"{file}:{line}: {len(row)} fields, the header has {len(names)}")
            if any(row[i] != v for i, v in chosen):
                continue
            try:
                stamp = parse_timestamp(row[t_at])
                if fmt == "rate" and not row[v_at].strip():
                    continue  # a sample without a value is a gap, not a zero
                values.append(_number(row[v_at], value_column))
                if c_at is not None:
                    completions.append(_number(row[c_at], "completion_tokens"))
            except ValueError as exc:
                raise TraceError(f"{file}:{line}: {exc}") from None
            lines.append(line)
            stamps.append(stamp)
    except csv.Error as exc:
        raise TraceError(f"{file}:{reader.line_num}: {exc}") from None
    if not lines:
        raise TraceError(f"{file}: no data rows" + (" match the selection" if select else ""))
    n = len(lines)
    return _Rows(
        np.frombuffer(lines, dtype=np.int64),
        np.frombuffer(stamps, dtype=np.float64),
        np.frombuffer(values, dtype=np.float64),
        np.frombuffer(completions, dtype=np.float64) if c_at is not None else np.zeros(n),
    )


def _grid_length(file: Path, first: float, end: float) -> int:
    seconds = math.ceil(end - math.floor(first) - 1e-9)
    if seconds > MAX_SECONDS:
        raise TraceError(
            f"{file}: spans {seconds / 86400:.0f} days (more than {MAX_SECONDS // 86400}); "
            "check the timestamps"
        )
    return max(1, seconds)


def _from_requests(file: Path, rows: _Rows) -> Trace:
    stamps, prompt, completion = rows.stamps, rows.values, rows.completions
    order = np.argsort(stamps, kind="stable")
    stamps, prompt, completion = stamps[order], prompt[order], completion[order]
    start = math.floor(stamps[0])
    n = _grid_length(file, stamps[0], math.floor(stamps[-1]) + 1.0)
    second = np.minimum((stamps - start).astype(np.int64), n - 1)
    requests = np.bincount(second, minlength=n).astype(np.float64)
    cost = REQUEST_OVERHEAD_TOKENS + completion + PREFILL_WEIGHT * prompt
    mean = float(cost.mean())
    work: FloatArray = requests.copy()
    if mean > 0:
        work = np.bincount(second, weights=cost / mean, minlength=n).astype(np.float64)
    return Trace(file.stem, float(start), requests, work, "requests", None, tokens=mean > 0)


def _steps(file: Path, rows: _Rows, what: str) -> tuple[FloatArray, FloatArray, float]:
    """Timestamps, values and the regular step of a binned or sampled source."""
    stamps, values, lines = rows.stamps, rows.values, rows.lines
    gaps = np.diff(stamps)
    bad = np.flatnonzero(gaps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise TraceError(
            f"{file}:{lines[i]}: timestamp {stamps[i]:g} does not increase "
            f"(previous {what} at line {lines[i - 1]})"
        )
    # The narrowest gap is the bin width: wider ones are missing bins.
    step = float(gaps.min()) if gaps.size else 1.0
    return stamps, values, step


def _from_bins(file: Path, rows: _Rows, fmt: TraceFormat, fill_missing: bool = False) -> Trace:
    stamps, counts, step = _steps(file, rows, "bin")
    if step < 1.0 - 1e-9:
        raise TraceError(f"{file}: bins of {step:g} s are finer than the 1 s simulation step")
    offsets = (stamps - stamps[0]) / step
    misaligned = np.flatnonzero(np.abs(offsets - np.round(offsets)) > 1e-6)
    if misaligned.size:
        i = int(misaligned[0])
        raise TraceError(
            f"{file}:{rows.lines[i]}: timestamp {stamps[i]:g} is not on the {step:g} s bin grid "
            f"of the first row (binned traces need fixed-width bins)"
        )
    filled = 0
    if fill_missing:
        stamps, counts, filled = _filled(stamps, counts, step)
    trace = _spread(file, stamps, counts, np.full(stamps.shape, step), fmt, step)
    return replace(trace, filled_bins=filled) if filled else trace


def _filled(
    stamps: FloatArray, counts: FloatArray, step: float
) -> tuple[FloatArray, FloatArray, int]:
    """Every bin of the grid, the missing ones (absent, or of zero requests: exports
    such as ServeGen's write a gap in collection as 0) interpolated between the bins
    with requests around them."""
    index = np.round((stamps - stamps[0]) / step).astype(np.int64)
    grid = stamps[0] + step * np.arange(int(index[-1]) + 1, dtype=np.float64)
    known = counts > 0
    if not known.any():
        return stamps, counts, 0
    at = np.arange(grid.size, dtype=np.float64)
    values = np.interp(at, index[known].astype(np.float64), counts[known])
    return grid, values, int(grid.size - np.count_nonzero(known))


def _from_rates(file: Path, rows: _Rows) -> Trace:
    # Rows sharing a timestamp are summed, and named by the first of them in the file.
    order = np.argsort(rows.stamps, kind="stable")
    sorted_stamps = rows.stamps[order]
    unique, first = np.unique(sorted_stamps, return_index=True)
    sums = np.add.reduceat(rows.values[order], first)
    merged = _Rows(rows.lines[order][first], unique, sums, np.zeros(unique.shape))
    stamps, rates, step = _steps(file, merged, "sample")
    widths = _hold(stamps, step)
    return _spread(file, stamps, rates * widths, widths, "rate", step)


def _spread(
    file: Path,
    stamps: FloatArray,
    counts: FloatArray,
    widths: FloatArray,
    fmt: TraceFormat,
    step: float,
) -> Trace:
    """Spread each bin's count evenly over the seconds it covers (missing bins are empty)."""
    start = math.floor(stamps[0])
    n = _grid_length(file, stamps[0], stamps[-1] + widths[-1])
    # Integrate a piecewise-constant rate over each 1 s cell: exact for any bin edges.
    edges = np.concatenate((stamps, [stamps[-1] + widths[-1]])) - start
    rates = counts / widths
    cum_at_edges = np.concatenate(([0.0], np.cumsum(counts)))
    cells = np.arange(n + 1, dtype=np.float64)
    where = np.clip(np.searchsorted(edges, cells, side="right") - 1, 0, len(stamps) - 1)
    inside = np.clip(cells - edges[where], 0.0, widths[where])
    cumulative = cum_at_edges[where] + rates[where] * inside
    cumulative[cells >= edges[-1]] = cum_at_edges[-1]
    per_second = np.maximum(np.diff(cumulative), 0.0)
    return Trace(file.stem, float(start), per_second, per_second.copy(), fmt, step)


def from_rate_samples(
    name: str, stamps: FloatArray, rates: FloatArray, step: float | None = None
) -> Trace:
    """A trace from requests/s samples (e.g. a Prometheus range query); NaN samples are gaps."""
    keep = ~np.isnan(rates)
    stamps, rates = stamps[keep], rates[keep]
    if stamps.size == 0:
        raise TraceError(f"{name}: no samples")
    order = np.argsort(stamps, kind="stable")
    stamps, rates = stamps[order], np.maximum(rates[order], 0.0)
    gaps = np.diff(stamps)
    width = step if step is not None else (float(np.median(gaps)) if gaps.size else 1.0)
    widths = _hold(stamps, width)
    return _spread(Path(name), stamps, rates * widths, widths, "rate", width)


def _hold(stamps: FloatArray, step: float) -> FloatArray:
    """How long each rate sample lasts: until the next one, but a long gap in the
    data is no traffic rather than a plateau (beyond one step or the lookback)."""
    limit = max(step, HOLD_SECONDS)
    widths: FloatArray = np.minimum(np.append(np.diff(stamps), step), limit)
    return widths


def peak_rate(values: FloatArray, window_seconds: int = 60) -> float:
    """Highest mean over any ``window_seconds`` consecutive seconds (whole trace if shorter)."""
    if values.size == 0:
        return 0.0
    w = max(1, min(window_seconds, int(values.size)))
    cumulative = np.concatenate(([0.0], np.cumsum(values)))
    return float(np.max(cumulative[w:] - cumulative[:-w]) / w)
