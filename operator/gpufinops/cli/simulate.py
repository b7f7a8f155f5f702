"""``gpufinops simulate | bench | forecast`` subcommands."""

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from gpufinops.sim.traces import Trace, TraceError


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError("must be in (0, 1]")
    return value


def _selection(text: str) -> tuple[str, str]:
    column, sep, value = text.partition("=")
    if not sep or not column:
        raise argparse.ArgumentTypeError("expected COLUMN=VALUE")
    return column.strip(), value


def _add_source(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("traffic source (a trace file, or Prometheus)")
    src.add_argument(
        "trace",
        nargs="?",
        type=Path,
        help="CSV trace: timestamp,requests (binned); timestamp,prompt_tokens,"
        "completion_tokens (per request); or timestamp,value (requests/s samples)",
    )
    src.add_argument(
        "--select",
        action="append",
        type=_selection,
        default=[],
        metavar="COLUMN=VALUE",
        help="keep only rows with this value (repeatable), e.g. 'request_type=Generative Requests'",
    )
    src.add_argument("--prometheus", metavar="URL", help="read history from this Prometheus")
    src.add_argument(
        "--query",
        help="PromQL returning requests/s, e.g. 'sum(rate(vllm:request_success_total[1m]))'",
    )
    src.add_argument("--since", default="7d", help="history to replay (default: %(default)s)")
    src.add_argument(
        "--step", type=float, default=15.0, help="query step in seconds (default: %(default)s)"
    )
    src.add_argument(
        "--days", type=float, default=None, help="simulate only the first DAYS of the trace"
    )
    src.add_argument(
        "--fill-missing",
        action="store_true",
        help="fill a binned trace's missing or zero bins by linear interpolation (default: "
        "they are empty, as the file says)",
    )


def _add_model(parser: argparse.ArgumentParser) -> None:
    model = parser.add_argument_group("service model (identical for every policy)")
    model.add_argument(
        "--peak-replicas",
        type=_positive_int,
        default=40,
        help="replicas the peak minute needs at 100%% utilisation; sets the capacity per "
        "replica (default: %(default)s)",
    )
    model.add_argument(
        "--startup-seconds",
        type=_non_negative_int,
        default=180,
        help="seconds from a replica asked for to it serving (node, image, model load; "
        "default: %(default)s)",
    )
    model.add_argument(
        "--lag-seconds",
        type=_non_negative_int,
        default=15,
        help="how old the signals a decision reads are (scrape lag; default: %(default)s)",
    )
    model.add_argument(
        "--sync-seconds",
        type=_positive_int,
        default=15,
        help="seconds between two decisions (default: %(default)s)",
    )
    model.add_argument(
        "--slo-wait-seconds", type=float, default=2.0,
        help="a request waiting longer than this misses the SLO (default: %(default)s)",
    )  # fmt: skip
    model.add_argument(
        "--service-seconds",
        type=_positive_int,
        default=5,
        help="time in service per request, for the running and in-flight gauges "
        "(default: %(default)s)",
    )
    model.add_argument(
        "--demand-signal",
        choices=("completions", "arrivals"),
        default="completions",
        help="what the gpufinops policies read as demand and forecast: the requests served "
        "(the engine presets' success counter; vLLM has no arrival counter) or the arrivals "
        "(a demandQuery on the gateway) (default: %(default)s)",
    )
    model.add_argument(
        "--max-replicas",
        type=_positive_int,
        default=None,
        help="maxReplicas of every policy (default: 10 x --peak-replicas)",
    )
    model.add_argument(
        "--scale-to-zero",
        type=_non_negative_int,
        default=None,
        metavar="IDLE_SECONDS",
        help="minReplicas 0: scale to zero after IDLE_SECONDS without traffic (the gpufinops "
        "policies' scaleToZero.idleSeconds, KEDA's cooldownPeriod); reports the cold-start "
        "waits of requests that arrive with no replica ready",
    )
    model.add_argument(
        "--refit-seconds",
        type=float,
        default=None,
        help="forecaster refit interval in simulated seconds "
        "(default: the shipped 21600; hourly while there is no model)",
    )


def _load(args: argparse.Namespace) -> Trace:
    from gpufinops.sim.traces import read_trace

    if args.prometheus:
        # Imported here: the Prometheus client takes a while to load, and a file needs none.
        from gpufinops.sim.prometheus import prometheus_trace

        if args.trace is not None:
            raise TraceError("give either a trace file or --prometheus, not both")
        if not args.query:
            raise TraceError("--prometheus needs --query")
        try:
            trace = prometheus_trace(args.prometheus, args.query, args.since, args.step)
        except ValueError as exc:
            raise TraceError(str(exc)) from None
    elif args.trace is None:
        raise TraceError("give a trace file or --prometheus URL --query Q")
    else:
        fill = getattr(args, "fill_missing", False)
        trace = read_trace(args.trace, dict(args.select) or None, fill_missing=fill)
    if args.days is not None:
        trace = trace.head(int(args.days * 86400))
    return trace


def _model(args: argparse.Namespace, trace: Trace) -> Any:
    from gpufinops.sim.service import ServiceModel

    options: dict[str, int | float] = {
        "startup_seconds": args.startup_seconds,
        "lag_seconds": args.lag_seconds,
        "sync_seconds": args.sync_seconds,
        "slo_wait_seconds": args.slo_wait_seconds,
        "service_seconds": args.service_seconds,
    }
    signal: str = getattr(args, "demand_signal", "completions")
    if args.max_replicas is not None:
        options["max_replicas"] = args.max_replicas
    if getattr(args, "scale_to_zero", None) is not None:
        options["min_replicas"] = 0
        options["idle_seconds"] = args.scale_to_zero
    return ServiceModel.normalised(trace, args.peak_replicas, demand_signal=signal, **options)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def _cmd_simulate(args: argparse.Namespace) -> int:
    from gpufinops.sim.report import describe_model, plot, results_table
    from gpufinops.sim.run import POLICIES, run_policy
    from gpufinops.sim.terminal import ProgressBar

    try:
        trace = _load(args)
        model = _model(args, trace)
    except (TraceError, ValueError) as exc:
        return _fail(exc)
    names = list(POLICIES) if "all" in args.policy else list(dict.fromkeys(args.policy))
    todo = [*names, *(["oracle"] if "oracle" not in names else [])]
    long_run = trace.seconds >= 6 * 3600
    outcomes, results = {}, {}
    for name in todo:
        bar = ProgressBar(name) if long_run and not args.json else None
        outcome, result = run_policy(
            name, trace, model, target=args.target, refit_seconds=args.refit_seconds, progress=bar
        )
        if bar is not None:
            bar.close()
        outcomes[name], results[name] = outcome, result
    oracle = results["oracle"].gpu_hours
    shown = [results[n] for n in names]
    if args.json:
        objects = [r.to_json() | {"oracle_gpu_hours": oracle} for r in shown]
        print(json.dumps(objects[0] if len(objects) == 1 else {"results": objects}, indent=2))
    else:
        print(describe_model(trace, model))
        print(results_table(shown, oracle))
        print(f"oracle (instant start, perfect foresight): {oracle:.1f} GPU-hours")
        for r in shown:
            if r.details:
                print(f"{r.policy}: " + ", ".join(f"{k} {v}" for k, v in r.details.items()))
    if args.plot:
        plot([outcomes[n] for n in names], args.plot)
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0


def _pricing(args: argparse.Namespace) -> tuple[str, float]:
    """(pool, USD per GPU-hour) a replica (one GPU) is billed at: ``--pool`` of
    ``--config`` (default: its first on-demand pool; the packaged config without one)."""
    from gpufinops.config.model import CapacityType, load_config
    from gpufinops.core.cost.accounting import gpu_prices

    config = load_config(args.config)
    prices = gpu_prices(config)
    name = args.pool
    if name is None:
        on_demand = [p.name for p in config.node_pools
                     if p.capacity_type == CapacityType.ON_DEMAND and p.name in prices]  # fmt: skip
        if not on_demand:
            raise ValueError("the config has no priced on-demand pool: name one with --pool")
        name = on_demand[0]
    if name not in prices:
        raise ValueError(f"--pool {name}: no priced pool of that name in the config")
    return name, prices[name]


def _cmd_bench(args: argparse.Namespace) -> int:
    from gpufinops.config.model import ConfigError
    from gpufinops.sim.report import bench_json, bench_markdown, pareto_plot, plot
    from gpufinops.sim.run import POLICIES, run_policy
    from gpufinops.sim.sweep import bench
    from gpufinops.sim.terminal import ProgressBar

    try:
        trace = _load(args)
        model = _model(args, trace)
        pricing = _pricing(args)
        spot_setup = _spot_setup(args, model) if args.spot_trace else None
    except (TraceError, ValueError, ConfigError) as exc:
        return _fail(exc)
    grid = tuple(args.grid) if args.grid else None
    started = time.process_time()
    runs = len(POLICIES) + 2 * len(grid or range(55))  # the grid and bisections: about 55
    state = {"done": 0}
    bar = ProgressBar(f"bench {trace.name}") if not args.json else None

    def on_result(label: str, _: object) -> None:
        state["done"] += 1
        if bar is not None:
            bar(min(state["done"] / runs, 1.0))

    kwargs: dict[str, Any] = {"slo_target": args.slo_target, "refit_seconds": args.refit_seconds}
    if grid is not None:
        kwargs["grid"] = grid
    result = bench(trace, model, on_result=on_result, **kwargs)
    if bar is not None:
        bar.close()
    policies = sum(r.cpu_seconds for r in result.results.values())
    total = time.process_time() - started
    cpu = {
        "all policies": round(policies, 2),
        "forecast fits": float(
            result.results["gpufinops"].details.get("forecast_fit_cpu_seconds", 0)
        ),
        "sweeps": round(sum(p.cpu_seconds for s in result.sweeps.values() for p in s.points), 2),
        "total": round(total, 2),
    }
    doc = bench_json(result, cpu, pricing)
    spot = None
    if spot_setup is not None:
        from gpufinops.sim.spot_bench import compare

        zones, spot_prices = spot_setup
        spot = compare(
            trace, model, zones, spot_prices, slo_target=args.slo_target,
            notice_seconds=args.notice_seconds, refit_seconds=args.refit_seconds,
        )  # fmt: skip
        _merge_spot(doc, spot.to_json())
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(bench_markdown(result, cpu, pricing))
        if spot is not None:
            from gpufinops.sim.spot_bench import spot_table

            print()
            print(spot_table(spot))
    if args.pareto:
        pareto_plot(result, args.pareto)
    if args.plot:
        shown = [result.outcomes["gpufinops"], result.outcomes["reactive"]]
        for name, sweep in result.sweeps.items():
            pick = sweep.chosen or sweep.best
            outcome, _ = run_policy(name, trace, model, target=pick.target)
            outcome.policy = f"{name} {pick.target:.2f}"
            shown.append(outcome)
        shown.append(result.outcomes["oracle"])
        plot(shown, args.plot)
    return 0


def _spot_setup(args: argparse.Namespace, model: Any) -> tuple[Any, Any]:
    """The ``--spot-trace`` zones and the spot comparison's prices, read before any run
    so that a bad file fails at once."""
    from gpufinops.config.model import load_config
    from gpufinops.sim.spot_bench import load_zones, spot_pricing

    zones = load_zones(args.spot_trace, model, args.spot_zone_replicas)
    return zones, spot_pricing(load_config(args.config), args.pool)


def _merge_spot(doc: dict[str, Any], spot: dict[str, Any]) -> None:
    """Adds the spot policies to the bench's JSON: ``results[<policy>]`` (``keda`` then
    reads as KEDA on on-demand at its cheapest target reaching the SLO target, with
    today's keys kept), ``ratios.usd_vs_keda`` and ``ratios.usd_vs_spothedge``, and the
    whole comparison under ``spot``."""
    results = doc.setdefault("results", {})
    for name, run in spot["results"].items():
        results[name] = {**results.get(name, {}), **run}
    doc.setdefault("ratios", {}).update(spot["ratios"])
    doc["spot"] = spot


def _cmd_backtest(args: argparse.Namespace) -> int:
    from gpufinops.sim.backtest import METHODS, backtest
    from gpufinops.sim.terminal import Column, ProgressBar, text_table

    try:
        trace = _load(args)
    except (TraceError, ValueError) as exc:
        return _fail(exc)
    bar = ProgressBar(f"backtest {trace.name}") if not args.json else None
    try:
        result = backtest(
            trace,
            args.horizon_seconds,
            quantile=args.quantile,
            refit_seconds=args.refit_seconds,
            stride_seconds=args.stride_seconds,
            target=args.target,
            progress=bar,
        )
    except ValueError as exc:
        return _fail(exc)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(
        f"{trace.name}: rolling origin, {result.origins} origins, horizon "
        f"{result.horizon_seconds:g} s, target {result.target}, refit every "
        f"{args.refit_seconds:g} s ({result.refits} refits), forecaster quantile {result.quantile}"
    )
    columns = [Column("method"), *(Column(h, numeric=True) for h in ("sMAPE %", "MASE", "CPU s"))]
    scores, cpu = result.scores, result.cpu_seconds
    rows = [
        [m, f"{scores[m].smape:.2f}", f"{scores[m].mase:.3f}", f"{cpu[m]:.1f}"] for m in METHODS
    ]
    print(text_table(columns, rows))
    return 0


def register(sub: "argparse._SubParsersAction[Any]") -> None:
    """Add the simulation commands to the top-level parser."""
    from gpufinops.sim.run import POLICIES
    from gpufinops.sim.sweep import DEFAULT_SLO_TARGET

    simulate = sub.add_parser("simulate", help="replay traffic against a scaling policy")
    simulate_sub = simulate.add_subparsers(dest="simulate_command", required=True)
    inference = simulate_sub.add_parser(
        "inference",
        help="simulate an inference service under a policy (1 s steps)",
        description="Replay a trace through the service model under one or more policies "
        "and report GPU-hours, SLO attainment and waits (docs/benchmarks.md).",
    )
    _add_source(inference)
    _add_model(inference)
    inference.add_argument(
        "--policy",
        action="append",
        choices=[*POLICIES, "all"],
        default=None,
        help="policy to run (repeatable; default: gpufinops)",
    )
    inference.add_argument(
        "--target",
        type=_fraction,
        default=None,
        help="keda: in-flight target as a fraction of a saturated replica's; hpa: "
        "utilisation target (default 0.7)",
    )
    inference.add_argument("--json", action="store_true", help="print JSON")
    inference.add_argument("--plot", type=Path, metavar="FILE.png", help="write a plot")
    inference.set_defaults(func=_cmd_simulate_default)
    _add_training(simulate_sub)
    _add_anomalies(simulate_sub)

    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    binf = bench_sub.add_parser(
        "inference",
        help="all policies on a trace, baselines compared at equal SLO",
        description="Run every policy, sweep keda's and hpa's targets for their cheapest "
        "setting reaching the SLO target, and report GPU-hour ratios.",
    )
    _add_source(binf)
    _add_model(binf)
    binf.add_argument(
        "--slo-target",
        type=_fraction,
        default=DEFAULT_SLO_TARGET,
        help="SLO attainment every compared policy must reach (default: %(default)s)",
    )
    binf.add_argument(
        "--grid",
        type=_fraction,
        nargs="+",
        default=None,
        help="run keda and hpa at exactly these targets instead of searching (default: 0.05 "
        "to 1.00 by 0.05, and a bisection to 0.005 for each of SLO 0.95, 0.99, 0.999 and "
        "gpufinops' attainment)",
    )
    binf.add_argument(
        "--config",
        type=Path,
        default=None,
        help="operator config whose pool prices bill every policy (default: packaged)",
    )
    binf.add_argument(
        "--pool",
        default=None,
        help="the pool a replica (one GPU) runs on (default: the config's first on-demand pool)",
    )
    spot = binf.add_argument_group(
        "spot replicas",
        "With --spot-trace, also compare gpufinops-spot (the core's count split by the "
        "spot core), keda on on-demand, keda-spot (every replica in the first zone) and "
        "spothedge (SkyServe's policy), each at its cheapest setting reaching "
        "--slo-target, preempted requests counted as misses; prices are the config's "
        "cheapest spot pool and on-demand pool of one GPU (docs/benchmarks.md).",
    )
    spot.add_argument(
        "--spot-trace", type=Path, action="append", metavar="FILE",
        help="a zone's spot availability (repeat, one file per zone): a raw SkyPilot "
        "spot-traces file or one converted by hack/convert-spot-traces.py",
    )  # fmt: skip
    spot.add_argument(
        "--notice-seconds", type=_non_negative_int, default=120,
        help="interruption notice before a preemption (default: %(default)s, AWS's)",
    )  # fmt: skip
    spot.add_argument(
        "--spot-zone-replicas", type=_positive_int, default=None,
        help="replicas a fully available zone holds (default: 2 x --peak-replicas)",
    )  # fmt: skip
    binf.add_argument(
        "--pareto", type=Path, metavar="FILE.png",
        help="write GPU-hours against SLO attainment, every policy (JSON: iso_slo grids)",
    )  # fmt: skip
    binf.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    binf.add_argument("--plot", type=Path, metavar="FILE.png", help="write a plot")
    binf.set_defaults(func=_cmd_bench)

    forecast = sub.add_parser("forecast", help="demand forecaster tools")
    forecast_sub = forecast.add_subparsers(dest="forecast_command", required=True)
    bt = forecast_sub.add_parser(
        "backtest",
        help="rolling-origin backtest against seasonal-naive and Holt-Winters",
        description="Score the forecaster, seasonal naive and Holt-Winters on the same "
        "origins (sMAPE, MASE).",
    )
    _add_source(bt)
    bt.add_argument(
        "--horizon-seconds", type=float, default=900.0,
        help="how far ahead each forecast looks, in seconds (default: %(default)s)",
    )  # fmt: skip
    bt.add_argument(
        "--target",
        choices=["peak", "value"],
        default="peak",
        help="forecast the peak over the horizon (what scaling uses) or the value at it",
    )
    bt.add_argument(
        "--quantile",
        type=float,
        default=0.9,
        help="forecaster quantile (default: %(default)s, the operator's)",
    )
    bt.add_argument(
        "--refit-seconds",
        type=float,
        default=86400.0,
        help="refit every model this often (default: %(default)s)",
    )
    bt.add_argument(
        "--stride-seconds", type=float, default=60.0, help="time between origins (default: 60)"
    )
    bt.add_argument("--json", action="store_true", help="print JSON")
    bt.set_defaults(func=_cmd_backtest)


def _cmd_simulate_default(args: argparse.Namespace) -> int:
    if not args.policy:
        args.policy = ["gpufinops"]
    return _cmd_simulate(args)


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _add_training(simulate_sub: "argparse._SubParsersAction[Any]") -> None:
    from gpufinops.sim.training import ReplayOptions

    d = ReplayOptions()
    training = simulate_sub.add_parser(
        "training",
        help="replay a GPU pod trace through spot placement and fallback",
        description="Place every job of an Alibaba GPU pod list (openb_pod_list format) "
        "with the training placement core, draw spot interruptions, and compare the cost "
        "with on-demand (docs/training.md).",
    )
    training.add_argument("trace", type=Path, help="pod list CSV (alibaba-gpu2023-pods.csv)")
    training.add_argument("--config", type=Path, help="operator config (default: the packaged one)")
    training.add_argument(
        "--all", action="store_true", help="every GPU pod, not only qos BE (training) pods"
    )
    training.add_argument("--seed", type=int, default=d.seed, help="default: %(default)s")
    training.add_argument(
        "--checkpoint-seconds",
        type=_non_negative_float,
        default=d.checkpoint_seconds,
        help="checkpoint interval, 0 for none (default: %(default)s)",
    )
    training.add_argument(
        "--restart-seconds",
        type=_non_negative_float,
        default=d.restart_seconds,
        help="restart overhead after an interruption (default: %(default)s)",
    )
    training.add_argument(
        "--deadline-factor",
        type=float,
        default=d.deadline_factor,
        help="deadline = submission + FACTOR x run time (default: %(default)s)",
    )
    training.add_argument(
        "--max-interruptions",
        type=_non_negative_int,
        default=d.max_interruptions,
        help="spot.maxInterruptions (default: %(default)s)",
    )
    training.add_argument(
        "--no-fallback", action="store_true", help="spot.fallbackToOnDemand: false"
    )
    training.add_argument("--no-spot", action="store_true", help="spot.enabled: false")
    training.add_argument(
        "--interruptions-per-month",
        type=_fraction,
        default=None,
        help="what-if: replace every spot pool's interruptionRatePerMonth",
    )
    training.add_argument(
        "--interruptions-per-hour",
        type=_non_negative_float,
        default=None,
        help="what-if: replace every spot pool's hourly interruption rate per node",
    )
    spot = training.add_argument_group(
        "spot availability replay",
        "With --spot-trace, jobs run against real spot availability (zone traces converted "
        "by hack/convert-spot-traces.py) with deadlines, and the placement core is compared "
        "with on-demand, greedy, Uniform Progress and the offline optimum (docs/training.md).",
    )
    spot.add_argument(
        "--spot-trace", type=Path, action="append", metavar="FILE|DIR",
        help="a zone's spot trace (repeat for several zones replayed together), or a "
        "directory: one replay per folder and instance type below it",
    )  # fmt: skip
    spot.add_argument(
        "--slack", type=float, action="append", metavar="S",
        help="deadline = arrival + S x run time (repeat; default: 1.1 1.25 1.5 2 3)",
    )  # fmt: skip
    spot.add_argument(
        "--duration-error", type=_non_negative_float, default=0.1,
        help="sigma of the log-normal error of expectedDurationSeconds (default: %(default)s)",
    )  # fmt: skip
    spot.add_argument(
        "--min-hours", type=_non_negative_float, default=1.0,
        help="jobs of at least this run time (default: %(default)s)",
    )  # fmt: skip
    spot.add_argument(
        "--max-jobs", type=_non_negative_int, default=300,
        help="at most this many jobs, sampled with --seed (default: %(default)s)",
    )  # fmt: skip
    spot.add_argument(
        "--plot", type=Path, metavar="FILE.png",
        help="draw one job's progress against its deadline under every policy",
    )  # fmt: skip
    training.add_argument("--json", action="store_true", help="print JSON")
    training.set_defaults(func=_cmd_simulate_training)


def _cmd_simulate_training(args: argparse.Namespace) -> int:
    from gpufinops.config.model import ConfigError, load_config
    from gpufinops.sim.training import ReplayOptions, simulate_training, table

    if args.spot_trace:
        return _simulate_spot(args)
    if args.deadline_factor < 1:
        return _fail(ValueError("--deadline-factor must be >= 1"))
    settings = ReplayOptions(
        seed=args.seed,
        checkpoint_seconds=args.checkpoint_seconds,
        restart_seconds=args.restart_seconds,
        deadline_factor=args.deadline_factor,
        max_interruptions=args.max_interruptions,
        fallback=not args.no_fallback,
        spot=not args.no_spot,
        interruptions_per_month=args.interruptions_per_month,
        interruptions_per_hour=args.interruptions_per_hour,
        include_all=args.all,
    )
    try:
        config = load_config(args.config)
        result = simulate_training(args.trace, config, settings)
    except (ConfigError, TraceError) as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps(result.to_json() | {"seed": args.seed}, indent=2))
    else:
        print(table(result, settings))
    return 0


def _simulate_spot(args: argparse.Namespace) -> int:
    """Every policy on real spot availability, per group of zone traces and per slack."""
    from gpufinops.config.model import ConfigError, load_config
    from gpufinops.sim import spot
    from gpufinops.sim.training import read_pods

    slacks = args.slack or list(spot.SLACKS)
    if any(not s >= 1 for s in slacks):
        return _fail(ValueError("--slack must be >= 1 (a deadline before the run time ends)"))
    checkpoint = args.checkpoint_seconds
    runs = []
    try:
        config = load_config(args.config)
        prices = spot.prices_of(config)
        pods, _ = read_pods(args.trace, args.all)
        for group in spot.spot_trace_files(args.spot_trace):
            traces = [spot.read_spot_trace(path) for path in group]
            for slack in slacks:
                options = spot.Options(
                    slack=slack, restart_seconds=args.restart_seconds,
                    checkpoint_seconds=checkpoint, duration_error=args.duration_error,
                    min_hours=args.min_hours, max_jobs=args.max_jobs, seed=args.seed,
                )  # fmt: skip
                runs.append(spot.run(pods, traces, options, prices))
                if args.plot is not None and len(runs) == 1:
                    spot.plot_job(pods, traces, options, prices, args.plot)
    except (ConfigError, TraceError) as exc:
        return _fail(exc)
    if args.json:
        out: dict[str, Any] = (
            runs[0] if len(runs) == 1 else {"runs": runs, "summary": spot.summary(runs)}
        )
        print(json.dumps(out, indent=2))
    else:
        print(spot.table(runs))
        if len(runs) > 1:
            print(spot.summary_table(spot.summary(runs)))
    return 0


def _add_anomalies(simulate_sub: "argparse._SubParsersAction[Any]") -> None:
    from gpufinops.sim.anomaly_replay import Options

    d = Options()
    anomalies = simulate_sub.add_parser(
        "anomalies",
        help="replay demand traces through the spend anomaly detector, with injected anomalies",
        description="Build a fleet of workloads from each demand trace, inject runaway "
        "replicas, demand surges, dearer pools and larger replicas, judge every hour with "
        "the operator's anomaly detector and report precision, recall and cause accuracy.",
    )
    anomalies.add_argument(
        "trace", nargs="+", type=Path,
        help="demand trace CSV: timestamp,requests (binned) or timestamp,prompt_tokens,"
        "completion_tokens (per request); several give a row each",
    )  # fmt: skip
    anomalies.add_argument(
        "--workloads", type=_positive_int, default=d.workloads,
        help="workloads built from each trace (default: %(default)s)",
    )  # fmt: skip
    anomalies.add_argument(
        "--seed", type=int, default=d.seed,
        help="draws the workloads and the injected anomalies (default: %(default)s)",
    )  # fmt: skip
    anomalies.add_argument(
        "--config", type=Path,
        help="operator config whose anomalies section is used (default: the packaged one)",
    )  # fmt: skip
    anomalies.add_argument(
        "--threshold", type=float, default=None,
        help="replace anomalies.threshold (robust deviations above the median), for sweeps",
    )  # fmt: skip
    anomalies.add_argument("--json", action="store_true", help="print JSON")
    anomalies.set_defaults(func=_cmd_simulate_anomalies)


def _cmd_simulate_anomalies(args: argparse.Namespace) -> int:
    from gpufinops.config.model import AnomalyConfig, ConfigError, load_config
    from gpufinops.sim.anomaly_replay import Options, replay, table
    from gpufinops.sim.terminal import ProgressBar
    from gpufinops.sim.traces import read_trace

    options = Options(workloads=args.workloads, seed=args.seed)
    results, cpu = [], []
    try:
        cfg = load_config(args.config).anomalies
        if args.threshold is not None:
            cfg = AnomalyConfig.model_validate(cfg.model_dump() | {"threshold": args.threshold})
        for path in args.trace:
            trace = read_trace(path)
            bar = ProgressBar(f"anomalies {trace.name}") if not args.json else None
            started = time.process_time()
            try:
                results.append(replay(trace, cfg, options, progress=bar))
            finally:
                if bar is not None:
                    bar.close()
            cpu.append(time.process_time() - started)
    except (ConfigError, TraceError, ValueError) as exc:
        return _fail(exc)
    if args.json:
        objects = [r.to_json() for r in results]
        print(json.dumps(objects[0] if len(objects) == 1 else {"results": objects}, indent=2))
    else:
        print(table(results, cpu))
    return 0
