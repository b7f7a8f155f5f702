"""``python -m gpufinops.localcluster up|down|status|env``."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .cluster import LocalCluster
from .errors import ClusterError

STATE_DIR_ENV = "GPUFINOPS_CLUSTER_DIR"


def default_state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV) or Path.cwd() / ".cluster")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gpufinops.localcluster",
        description="A local Kubernetes control plane with fake GPU nodes and Prometheus.",
    )
    parser.add_argument("command", choices=("up", "down", "status", "env"))
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help=f"where the cluster keeps its state (default: ${STATE_DIR_ENV} or ./.cluster)",
    )
    parser.add_argument(
        "--no-controllers", action="store_true", help="no controller-manager/scheduler"
    )
    parser.add_argument("--no-kwok", action="store_true", help="no kwok and no fake nodes")
    parser.add_argument("--no-prometheus", action="store_true", help="no Prometheus")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    cluster = LocalCluster(
        args.state_dir or default_state_dir(),
        with_controllers=not args.no_controllers,
        with_kwok=not args.no_kwok,
        with_prometheus=not args.no_prometheus,
        log=lambda msg: print(msg, flush=True),
    )
    try:
        if args.command == "up":
            cluster.up()
            print(f"export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
        elif args.command == "down":
            cluster.down()
            print(f"cluster in {cluster.state_dir} is down")
        elif args.command == "status":
            return _status(cluster)
        else:
            print(f"export KUBECONFIG={shlex.quote(str(cluster.kubeconfig))}")
            if cluster.with_prometheus:
                print(f"export GPUFINOPS_PROMETHEUS_URL={shlex.quote(cluster.prometheus_url)}")
    except ClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _status(cluster: LocalCluster) -> int:
    pids = cluster.pids()
    for name, pid in pids.items():
        print(f"{name:<24} {'running, pid ' + str(pid) if pid else 'stopped'}")
    if pids["kube-apiserver"] is None:
        print(f"cluster in {cluster.state_dir} is down")
        return 1
    ready = cluster.is_running()
    print(f"{'apiserver':<24} {cluster.server_url} ({'ready' if ready else 'not ready'})")
    if pids["prometheus"] is not None:
        print(f"{'prometheus':<24} {cluster.prometheus_url}")
    print(f"{'kubeconfig':<24} {cluster.kubeconfig}")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
