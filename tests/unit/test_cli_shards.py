"""Shard flags of ``gpufinops run``, checked before anything starts.

A shard that cannot work (node duties on a namespaced instance, a selector the
API server would reject) must be refused at the command line, where the person
deploying it sees the reason, and not after it has joined a peering; the sharded
instances themselves are run against a cluster in tests/integration/test_sharding.py.
"""

import pytest

from gpufinops.cli.main import main
from gpufinops.cli.run import make_shard


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--namespace", "team-a", "--node-duties"], "--node-duties needs a cluster-wide"),
        (["--selector", "shard in (a,b"], "is not a Kubernetes label selector"),
        (["--selector", "shard=a;b"], "is not a Kubernetes label selector"),
    ],
)
def test_shards_that_cannot_work_are_refused_before_starting(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", *args]) == 1
    assert message in capsys.readouterr().err


def test_shard_flags_say_what_the_instance_acts_on() -> None:
    label = make_shard([], "gpufinops.dev/shard in (a, b),!canary", None)
    assert label.clusterwide and label.node_duties
    assert label.describe() == (
        "AIWorkloads in all namespaces matching 'gpufinops.dev/shard in (a, b),!canary', "
        "with node duties"
    )
    assert not make_shard(["team-a-*"], None, None).node_duties
    assert not make_shard([], "gpufinops.dev/shard=b", False).node_duties
