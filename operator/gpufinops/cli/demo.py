"""``gpufinops demo``: the live local demo, or the operator alone on the current context."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "GPUFINOPS_CLUSTER_DIR"
TRACES_ENV = "GPUFINOPS_TRACES_DIR"


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.run_args and not args.current_context:
        print(
            "error: extra arguments are for gpufinops run, with --current-context", file=sys.stderr
        )
        return 2
    if not 2 <= args.day_seconds <= 86_400:
        print("error: --day-seconds must be within 2..86400", file=sys.stderr)
        return 2
    if args.current_context:
        # Someone else's cluster: no fake nodes, load or examples, only the operator.
        argv = [sys.executable, "-m", "gpufinops", "run", *args.run_args]
        os.execv(sys.executable, argv)
    from gpufinops.demo.session import DEFAULT_TRACES, DemoOptions, run_demo

    state_dir = args.state_dir or Path(os.environ.get(STATE_DIR_ENV) or Path.cwd() / ".cluster")
    traces = args.traces or Path(os.environ.get(TRACES_ENV) or DEFAULT_TRACES)
    return run_demo(
        DemoOptions(
            state_dir=state_dir,
            traces_dir=traces,
            duration=args.duration,
            day_seconds=args.day_seconds,
            start_hour=args.start_hour,
            refresh=args.refresh,
            sync_seconds=args.sync_seconds,
            keep_cluster=args.keep_cluster,
        )
    )


def register(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="live demo: local cluster with fake GPU nodes, replayed load, the operator",
        description="Start the local cluster (KWOK GPU pools, Prometheus), the example "
        "AIWorkloads, a load generator replaying a real trace into fake vLLM metrics, and "
        "the operator; show replicas, demand, placements, nodes and spend live. q or "
        "Ctrl-C stops everything it started.",
    )
    demo.add_argument(
        "--state-dir", type=Path, default=None,
        help=f"local cluster state (default: ${STATE_DIR_ENV} or ./.cluster)",
    )  # fmt: skip
    demo.add_argument(
        "--traces", type=Path, default=None,
        help=f"folder of the shared traces (default: ${TRACES_ENV} or ../shared/traces)",
    )  # fmt: skip
    demo.add_argument(
        "--duration", type=float, default=None,
        help="stop by itself this many seconds after the first screen (for CI)",
    )  # fmt: skip
    demo.add_argument(
        "--day-seconds", type=int, default=600,
        help="wall seconds one day of the trace lasts (default: %(default)s, 144x faster)",
    )  # fmt: skip
    demo.add_argument(
        "--start-hour", type=float, default=6.0,
        help="hour of the trace day the demo starts at (default: %(default)s)",
    )  # fmt: skip
    demo.add_argument("--refresh", type=float, default=2.0, help="screen refresh, seconds")
    demo.add_argument(
        "--sync-seconds", type=float, default=3.0,
        help="the operator's autoscaling period (default: %(default)s, for a compressed day)",
    )  # fmt: skip
    demo.add_argument(
        "--keep-cluster", action="store_true", help="leave the local cluster running at the end"
    )
    demo.add_argument(
        "--current-context", action="store_true",
        help="run only the operator against the current kube context (arguments after -- "
        "go to gpufinops run)",
    )  # fmt: skip
    demo.add_argument("run_args", nargs="*", help=argparse.SUPPRESS)
    demo.set_defaults(func=_cmd_demo)
