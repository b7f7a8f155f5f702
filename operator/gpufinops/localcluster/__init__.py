"""An embedded Kubernetes cluster made of local processes on loopback.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built from the
Go modules by ``hack/build-control-plane.sh``), kwok simulating GPU nodes, and a
Prometheus server::

    cluster = LocalCluster(Path(".cluster"))
    cluster.up()            # idempotent
    cluster.apply("examples/workload.yaml")
    cluster.down()
"""

from .binaries import Binaries, control_plane_dir, find_binaries, find_kubectl
from .cluster import COMPONENTS, SYSTEM_NAMESPACE, LocalCluster
from .errors import ClusterError
from .kubectl import Kubectl
from .nodes import NodePool, load_pools
from .ports import port_is_free
from .processes import poll

__all__ = [
    "COMPONENTS",
    "SYSTEM_NAMESPACE",
    "Binaries",
    "ClusterError",
    "Kubectl",
    "LocalCluster",
    "NodePool",
    "control_plane_dir",
    "find_binaries",
    "find_kubectl",
    "load_pools",
    "poll",
    "port_is_free",
]
