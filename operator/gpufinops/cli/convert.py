"""``gpufinops convert keda``: a KEDA ScaledObject as an AIWorkload in Recommend mode."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from gpufinops.core.keda import ConversionError, convert


def _cmd_keda(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        print(f"error: {args.file} is not YAML: {exc}", file=sys.stderr)
        return 2
    out: list[dict[str, Any]] = []
    failed = 0
    for i, doc in enumerate(documents):
        if not isinstance(doc, dict) or doc.get("kind") != "ScaledObject":
            continue
        name = (doc.get("metadata") or {}).get("name", f"document {i}")
        try:
            converted = convert(doc, team=args.team)
        except ConversionError as exc:
            print(f"error: ScaledObject {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        for note in converted.notes:
            print(f"note: ScaledObject {name}: {note}", file=sys.stderr)
        out.append(converted.manifest)
    if not out:
        if not failed:
            print(f"error: no ScaledObject in {args.file}", file=sys.stderr)
        return 1
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False))
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``convert`` to the top-level parser."""
    p = sub.add_parser("convert", help="turn another autoscaler's object into an AIWorkload")
    kinds = p.add_subparsers(dest="convert_from", required=True)
    keda = kinds.add_parser(
        "keda",
        help="a KEDA ScaledObject with a Prometheus trigger, as an AIWorkload in Recommend mode",
        description="Prints one AIWorkload per ScaledObject with a prometheus trigger: the same "
        "query as queueQuery, threshold as targetQueueDepthPerReplica, min/max replicas, "
        "cooldown as scale-to-zero, fallback and HPA behavior. It is in Recommend mode: "
        "applied next to the ScaledObject it changes nothing and says what it would do. "
        "What has no counterpart is listed on stderr.",
    )
    keda.add_argument("-f", "--file", required=True, help="ScaledObject YAML file, or - for stdin")
    keda.add_argument("--team", default=None, help="costAllocation.team (default: its team label)")
    keda.set_defaults(func=_cmd_keda)
