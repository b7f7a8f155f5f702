"""``gpufinops``: run the operator, print the CRD, check a config."""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gpufinops import __version__
from gpufinops.config.model import ConfigError, load_config


def _cmd_crd(args: argparse.Namespace) -> int:
    from gpufinops.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def _cmd_reference(args: argparse.Namespace) -> int:
    if args.cli:
        from gpufinops.cli.reference import cli_markdown

        sys.stdout.write(cli_markdown(build_parser()))
        return 0
    from gpufinops.api.reference import reference_markdown

    sys.stdout.write(reference_markdown())
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for pool in config.node_pools:
        print(
            f"{pool.name}: {pool.instance_type} {pool.capacity_type} "
            f"{pool.gpus_per_node}x{pool.gpu_type} ${pool.hourly_price_usd:.4f}/h "
            f"(${pool.gpu_hourly_price_usd:.4f} per GPU-hour)"
        )
    print("config OK")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from gpufinops.cli.run import ShardError, run_operator, shard_from_args

    try:
        config = load_config(args.config)
        shard = shard_from_args(args)
    except (ConfigError, ShardError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    url = args.prometheus_url or os.environ.get("GPUFINOPS_PROMETHEUS_URL")
    if url:
        config.prometheus.url = url
    return run_operator(
        config,
        shard=shard,
        liveness=args.liveness,
        peering=args.peering,
        priority=args.priority,
        log_format=args.log_format,
        verbose=args.verbose,
        metrics_address=None if args.metrics_address == "none" else args.metrics_address,
        sync_seconds=args.sync_seconds,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpufinops",
        description="Keeps AI workloads on Kubernetes fast and their GPU bill small.",
    )
    parser.add_argument("--version", action="version", version=f"gpufinops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the operator against the current kube context")
    run.add_argument(
        "--config",
        type=Path,
        default=None,
        help="operator config YAML (default: the packaged config for the local cluster); "
        "also GPUFINOPS_CONFIG",
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable; globs allowed); default: all namespaces",
    )
    from gpufinops.cli.run import add_shard_arguments

    add_shard_arguments(run)
    run.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL, or 'none' (default: %(default)s)",
    )
    run.add_argument(
        "--peering",
        default=None,
        help="peering name for high availability: only the highest-priority replica acts "
        "(needs the Kopf peering CRDs from crds/); default: standalone",
    )
    run.add_argument("--priority", type=int, default=0, help="peering priority of this replica")
    run.add_argument(
        "--prometheus-url",
        default=None,
        help="override the config's Prometheus URL (also GPUFINOPS_PROMETHEUS_URL)",
    )
    run.add_argument(
        "--metrics-address",
        default="0.0.0.0:9100",
        help="where to serve the operator's own /metrics, or 'none' (default: %(default)s)",
    )
    run.add_argument(
        "--sync-seconds",
        type=float,
        default=15.0,
        help="autoscaling period per workload in seconds (default: %(default)s)",
    )
    run.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.set_defaults(func=_cmd_run)

    crd = sub.add_parser("crd", help="print the AIWorkload CRD generated from the API models")
    crd.set_defaults(func=_cmd_crd)

    reference = sub.add_parser(
        "reference", help="print the AIWorkload API reference (docs/reference.md) as Markdown"
    )
    reference.add_argument(
        "--cli", action="store_true", help="print this command-line reference (docs/cli.md)"
    )
    reference.set_defaults(func=_cmd_reference)

    config = sub.add_parser("config", help="operator config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate a config file and show its prices")
    check.add_argument(
        "file", type=Path, nargs="?", default=None,
        help="the config to check (default: GPUFINOPS_CONFIG, else the packaged one)",
    )  # fmt: skip
    check.set_defaults(func=_cmd_config_check)

    from gpufinops.cli import convert, cost, demo, report, simulate

    simulate.register(sub)
    cost.register(sub)
    report.register(sub)
    demo.register(sub)
    convert.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is None and args.command == "run":
        env = os.environ.get("GPUFINOPS_CONFIG")
        args.config = Path(env) if env else None
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
