"""The autoscaler's memory in status: what a restarted operator reads back."""

import json

from hypothesis import given
from hypothesis import strategies as st

from gpufinops.adapters.status import memory_patch, read_memory
from gpufinops.core.scaling.behavior import Sample
from gpufinops.core.scaling.decide import ScalingState
from gpufinops.core.scaling.headroom import BINS, GROWTH, Calibration, margin, observe


def _learned() -> Calibration:
    """Bursty traffic: a quarter of the moments needed 40 % more than was ready."""
    calibration = Calibration()
    for tick in range(2000):
        now = 1_000_000.0 + 15 * tick
        demand = 140.0 if tick % 4 == 0 else 90.0
        calibration = observe(calibration, now, demand, 100.0, 1.0, 180.0)
    return calibration


def _through_status(state: ScalingState) -> ScalingState:
    wire = json.loads(json.dumps(memory_patch(state)))  # as the API server stores it
    return read_memory({"autoscaler": wire})


def test_a_restart_keeps_the_calibrated_margin_and_the_stabilisation_history() -> None:
    calibration = _learned()
    learned = margin(calibration)
    assert learned is not None and learned > 1.3
    state = ScalingState(
        recommendations=(Sample(1.0, 3),), capacity_per_replica=2.5, headroom=calibration
    )
    back = _through_status(state)
    assert margin(back.headroom) == learned
    assert back.headroom.pending == calibration.pending
    assert back.headroom.updated == calibration.updated
    assert back.recommendations == state.recommendations
    assert back.capacity_per_replica == 2.5
    # and the record keeps learning where it left off
    later = calibration.updated + 15
    assert observe(back.headroom, later, 90.0, 100.0, 1.0, 180.0).scored > calibration.scored


def test_the_stored_record_is_compact() -> None:
    wire = json.dumps(memory_patch(ScalingState(headroom=_learned())))
    assert len(wire) < 1500, len(wire)


def test_no_record_or_a_damaged_one_starts_over_without_failing() -> None:
    assert read_memory({"autoscaler": {"capacityPerReplica": 2.0}}).headroom == Calibration()
    too_long = {"counts": [1.0] * (BINS + 5), "scored": 5000.0}
    assert read_memory({"autoscaler": {"headroom": too_long}}).headroom == Calibration()
    negative = {"counts": [1.0, -3.0], "scored": 5000.0}
    assert read_memory({"autoscaler": {"headroom": negative}}).headroom == Calibration()
    wrong_type = {"autoscaler": {"headroom": {"counts": "many"}}}
    assert read_memory(wrong_type) == ScalingState()


@given(
    st.lists(st.floats(min_value=0, max_value=1e6), max_size=BINS + 1),
    st.floats(min_value=0, max_value=1e6),
)
def test_any_stored_histogram_reads_back_to_the_same_margin_within_a_bin(
    counts: list[float], scored: float
) -> None:
    stored = {"headroom": {"counts": counts, "scored": scored, "updated": 5.0, "pending": []}}
    first = read_memory({"autoscaler": stored}).headroom
    again = _through_status(ScalingState(headroom=first)).headroom
    before, after = margin(first), margin(again)
    # six significant digits on the wire: a quantile exactly on a bin edge may move one bin
    assert (before is None) == (after is None)
    if before is not None and after is not None:
        assert before / GROWTH - 1e-9 <= after <= before * GROWTH + 1e-9
