"""Timelines: an execution as Chrome trace-event JSON, which Perfetto and chrome://tracing
load.

Each simulated rank is a process (``pid``) and each of its streams a thread (``tid``), so
the viewer shows one track per rank and stream. Each task is a complete event (``"ph":
"X"``) named after its pass, layer and micro-batch, with times in microseconds (Trace
Event Format, Google, 2016: "Complete Events", "Metadata Events").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deepflow.sim.executor import Execution
from deepflow.specs.files import atomic_write

__all__ = ["STREAM_ORDER", "chrome_trace", "write_trace"]

STREAM_ORDER = ("compute", "pp", "dp")
"""Track order inside a rank; other streams follow in name order."""


def _tid(stream: str) -> int:
    return STREAM_ORDER.index(stream) if stream in STREAM_ORDER else len(STREAM_ORDER)


def chrome_trace(execution: Execution, labels: dict[int, str] | None = None) -> dict[str, Any]:
    """The trace-event object of ``execution``; ``labels`` names the ranks' tracks."""
    graph = execution.graph
    labels = labels or {}
    events: list[dict[str, Any]] = []
    tids: dict[tuple[int, str], int] = {}
    extra: dict[int, int] = {}
    for rank, stream in sorted(graph.streams(), key=lambda k: (k[0], _tid(k[1]), k[1])):
        if stream in STREAM_ORDER:
            tid = _tid(stream)
        else:
            tid = len(STREAM_ORDER) + extra.get(rank, 0)
            extra[rank] = extra.get(rank, 0) + 1
        tids[(rank, stream)] = tid
        if (rank, "") not in tids:
            tids[(rank, "")] = -1
            events.append(
                {
                    "ph": "M",
                    "name": "process_name",
                    "pid": rank,
                    "tid": 0,
                    "args": {"name": labels.get(rank, f"rank {rank}")},
                }
            )
            events.append(
                {
                    "ph": "M",
                    "name": "process_sort_index",
                    "pid": rank,
                    "tid": 0,
                    "args": {"sort_index": rank},
                }
            )
        events.append(
            {"ph": "M", "name": "thread_name", "pid": rank, "tid": tid, "args": {"name": stream}}
        )
    for t in graph.tasks:
        if t.duration_s <= 0:
            continue
        args: dict[str, Any] = {"phase": t.phase, "kind": t.kind.value}
        if t.layer >= 0:
            args["layer"] = t.layer
        if t.micro_batch >= 0:
            args["micro_batch"] = t.micro_batch
        if t.chunk >= 0:
            args["chunk"] = t.chunk
        if t.size_bytes:
            args["bytes"] = t.size_bytes
        events.append(
            {
                "ph": "X",
                "name": t.name,
                "cat": t.category,
                "pid": t.rank,
                "tid": tids[(t.rank, t.stream)],
                "ts": float(execution.start[t.id]) * 1e6,
                "dur": t.duration_s * 1e6,
                "args": args,
            }
        )
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_trace(
    execution: Execution, path: str | Path, labels: dict[int, str] | None = None
) -> None:
    """Write the Chrome trace of ``execution`` to ``path`` (atomically: a failed write
    leaves no partial file)."""
    atomic_write(path, json.dumps(chrome_trace(execution, labels)), "--trace")
