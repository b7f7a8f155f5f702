"""The shutdown of one node as a resumable state machine.

Progress is written on the node (an annotation) before each step, so an
operator killed between taint, drain and removal resumes where it stopped and
finishes exactly once — or, if the node got work meanwhile, un-taints it.

The provider's action (delete the Node, its NodeClaim, lower a
MachineDeployment) is the only step that cannot be taken back. Until it is
recorded as done, a node in ``ShuttingDown`` is checked again like any other
(a pod may have landed while the operator was down); once recorded, it is never
repeated: the node is only waited for.
"""

from enum import StrEnum

PHASE_ANNOTATION = "gpufinops.dev/idle-shutdown-phase"
REMOVAL_REQUESTED = "gpufinops.dev/removal-requested"
"""When the provider accepted the node's removal (epoch seconds): never asked twice."""


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
    AWAIT_REMOVAL = "AwaitRemoval"
    """The provider accepted the removal; the node goes when the provider is done."""
    DONE = "Done"
    """Nothing to do on this node now."""


def next_step(phase: Phase, *, safe: bool, drained: bool) -> Step:
    """The step to take now, given the recorded phase and a fresh safety check, for a
    node whose removal the provider has not accepted yet (``plan.advance`` only waits
    for one whose removal it has: never asked twice)."""
    if not safe:
        return Step.ABORT if phase != Phase.NONE else Step.DONE
    if phase == Phase.NONE:
        return Step.TAINT
    if phase == Phase.TAINTED:
        return Step.DRAIN
    if not drained:
        return Step.WAIT if phase == Phase.DRAINING else Step.DRAIN
    return Step.SHUT_DOWN
