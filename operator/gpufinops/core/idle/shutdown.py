"""The shutdown of one node as a resumable state machine.

Progress is written on the node (an annotation) before each step, so an
operator killed between taint, drain and delete resumes where it stopped and
finishes exactly once — or, if the node got work meanwhile, un-taints it.
"""

from enum import StrEnum

PHASE_ANNOTATION = "gpufinops.dev/idle-shutdown-phase"


class Phase(StrEnum):
    NONE = ""
    TAINTED = "Tainted"
    DRAINING = "Draining"
    SHUTTING_DOWN = "ShuttingDown"


class Step(StrEnum):
    TAINT = "Taint"
    DRAIN = "Drain"
    SHUT_DOWN = "ShutDown"
    ABORT = "Abort"
    """Remove our taint and phase: the node is busy again."""
    WAIT = "Wait"
    """Draining: evictions still in progress."""
    DONE = "Done"


def next_step(phase: Phase, *, safe: bool, drained: bool) -> Step:
    """The step to take now, given the recorded phase and a fresh safety check."""
    if phase == Phase.SHUTTING_DOWN:
        return Step.SHUT_DOWN  # past the point of no return: finish it
    if not safe:
        return Step.ABORT if phase != Phase.NONE else Step.DONE
    if phase == Phase.NONE:
        return Step.TAINT
    if phase == Phase.TAINTED:
        return Step.DRAIN
    return Step.SHUT_DOWN if drained else Step.WAIT


def phase_after(step: Step, phase: Phase) -> Phase:
    """The phase to record *before* performing ``step``."""
    return {
        Step.TAINT: Phase.TAINTED,
        Step.DRAIN: Phase.DRAINING,
        Step.SHUT_DOWN: Phase.SHUTTING_DOWN,
        Step.ABORT: Phase.NONE,
    }.get(step, phase)
