#!/usr/bin/env python3
"""Convert a local copy of the SkyPilot spot traces into the simulator's form.

The traces (repository skypilot-org/spot-traces, from "Can't Be Late", NSDI '24)
carry no licence, so they are never committed: clone or copy them anywhere, then

    hack/convert-spot-traces.py PATH/TO/spot-traces OUT_DIR

writes one JSON file per zone trace under OUT_DIR, in the same folder layout
(``availability/1-node/aws-10-26-2022/us-west-2a_v100_1.json``, ...), each
``{"zone", "instance", "gpusPerInstance", "stepSeconds", "available", "source"}``.
``gpufinops simulate training TRACE --spot-trace OUT_DIR/...`` replays them.
"""

import argparse
import json
import sys
from pathlib import Path

from gpufinops.sim.spot import convert_skypilot
from gpufinops.sim.traces import TraceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="the spot-traces checkout (or one file)")
    parser.add_argument("out", type=Path, help="where to write the converted traces")
    args = parser.parse_args(argv)
    files = sorted(args.source.rglob("*.json")) if args.source.is_dir() else [args.source]
    root = args.source if args.source.is_dir() else args.source.parent
    if not files:
        print(f"no *.json files below {args.source}", file=sys.stderr)
        return 2
    for path in files:
        try:
            trace = convert_skypilot(path, root)
        except TraceError as exc:
            print(f"skipped: {exc}", file=sys.stderr)
            continue
        target = args.out / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(trace.to_json()) + "\n")
        print(f"{target}: {trace.zone} {trace.instance}, {trace.steps} steps of "
              f"{trace.step_seconds:g} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
