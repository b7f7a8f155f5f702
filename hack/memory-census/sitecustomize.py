"""A memory census of a running operator, taken on SIGUSR2.

Put this directory on PYTHONPATH when starting the operator:

    PYTHONPATH=hack/memory-census CENSUS_OUT=/tmp/census.txt \\
        gpufinops run ...        # then: kill -USR2 <pid>

The census runs on the event loop's thread (a few seconds at thousands of
workloads; ticks wait meanwhile) and appends to ``CENSUS_OUT``: RSS, glibc's
heap (``mallinfo2``), then the deep size of what each group of roots holds.
Every live object is sized once (``sys.getsizeof``), by the first group that
reaches it, so shared objects count for the earlier group: the operator's memo
first, then Kopf's copy of each daemon's body, the autoscaling daemons, Kopf's
per-object memories, the asyncio tasks, the Prometheus client registry and last
everything else the garbage collector tracks. It is a diagnostic, not part of
the operator: nothing imports it.
"""

import collections
import ctypes
import gc
import os
import signal
import sys
import threading
import traceback
import types
from collections.abc import Iterable
from typing import Any

STOP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
        threading.Thread)  # fmt: skip


def _type_name(obj: object) -> str:
    kind = type(obj)
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', '?')}"


class _Sizer:
    def __init__(self, exclude: Iterable[object]) -> None:
        self.seen = {id(o) for o in exclude}
        self.seen.add(id(self.seen))

    def deep(self, roots: Iterable[object]) -> tuple[int, int, collections.Counter[str]]:
        total, count, by_type = 0, 0, collections.Counter[str]()
        stack = list(roots)
        while stack:
            obj = stack.pop()
            if id(obj) in self.seen:
                continue
            self.seen.add(id(obj))
            if isinstance(obj, STOP):
                continue
            try:
                size = sys.getsizeof(obj)
            except TypeError:
                size = 0
            total, count = total + size, count + 1
            by_type[_type_name(obj)] += size
            stack.extend(gc.get_referents(obj))
        return total, count, by_type


def _malloc() -> str:
    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                         "uordblks", "fordblks", "keepcost")
        ]  # fmt: skip

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return (f"glibc heap: arena {info.arena / 1e6:.1f} MB, mmap {info.hblkhd / 1e6:.1f} MB, "
            f"in use {info.uordblks / 1e6:.1f} MB, free {info.fordblks / 1e6:.1f} MB")  # fmt: skip


def census(out: Any) -> None:
    import asyncio

    gc.collect()
    objects = gc.get_objects()
    modules = list(sys.modules.values())
    exclude: list[object] = [objects, sys._getframe(), *modules]
    exclude += [vars(m) for m in modules if hasattr(m, "__dict__")]
    exclude += [o for o in objects if isinstance(o, asyncio.AbstractEventLoop)]
    sizer = _Sizer(exclude)

    def of_type(suffix: str) -> list[object]:
        return [o for o in objects if _type_name(o).endswith(suffix)]

    memories = of_type("inventory.ResourceMemory")
    memos = of_type("ephemera.Memo")
    memo: dict[str, Any] = max(memos, key=len) if memos else {}
    bodies = [m.daemons_memory.live_fresh_body for m in memories
              if getattr(m.daemons_memory, "live_fresh_body", None) is not None]  # fmt: skip
    daemons = [o for o in objects
               if isinstance(o, types.CoroutineType) and o.__qualname__ == "autoscale"]  # fmt: skip
    loop = asyncio._get_running_loop()
    registry = sys.modules.get("prometheus_client")
    groups: list[tuple[str, list[object]]] = [
        *((f"memo.{key}", [value]) for key, value in sorted(memo.items())),
        ("Kopf's copy of each daemon's body", bodies),
        ("autoscaling daemons (ours)", daemons),
        ("Kopf's per-object memories", memories),
        ("asyncio tasks", list(asyncio.all_tasks(loop)) if loop else []),
        ("prometheus_client registry", [registry.REGISTRY] if registry else []),
        ("everything else gc tracks", objects),
    ]
    with open("/proc/self/status") as status:
        rss = [line.split()[1] for line in status if line.startswith("VmRSS")]
    print(f"=== census: RSS {int(rss[0]) / 1024:.0f} MB, {len(objects)} gc objects, "
          f"{threading.active_count()} threads", file=out)  # fmt: skip
    print(_malloc(), file=out)
    for name, roots in groups:
        total, count, by_type = sizer.deep(roots)
        top = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in by_type.most_common(6))
        print(f"{name}: {len(roots)} roots, {total / 1e6:.1f} MB in {count} objects; {top}",
              file=out)  # fmt: skip


def _on_signal(signum: int, frame: object) -> None:
    path = os.environ.get("CENSUS_OUT", "/tmp/gpufinops-census.txt")
    with open(path, "a") as out:
        try:
            census(out)
        except Exception:  # a diagnostic must never take the operator down
            traceback.print_exc(file=out)


signal.signal(signal.SIGUSR2, _on_signal)
