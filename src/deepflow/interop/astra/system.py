"""ASTRA-sim system configuration (JSON) -> :class:`SystemConfig` in SI units.

Keys, values and units as ``Sys::initialize_sys`` and ``CollectiveImplLookup`` read them
(astra-sim ``astra-sim/system/Sys.cc``; reference doc section 2.3):

=================================  =============================================  ==========
key                                meaning                                        unit
=================================  =============================================  ==========
scheduling-policy                  LIFO, FIFO or EXPLICIT
collective-optimization            baseline or localBWAware
endpoint-delay                     per-message endpoint delay (default 10)        ns
local-reduction-delay              LogGP path (default 1)                         ns
active-chunks-per-dimension        chunks in flight per dimension (default 1)
preferred-dataset-splits           chunks per collective (default 1)
L, o, g, G, model-shared-bus       LogGP memory-bus parameters (default 0)
peak-perf                          roofline peak                                  TFLOP/s
local-mem-bw                       local memory bandwidth, GB = 1e9 bytes         GB/s
roofline-enabled, trace-enabled,   0/1 switches
replay-only, track-local-mem
local-mem-trace-filename           string
<coll>-implementation              one algorithm per network dimension
<coll>-implementation-custom       a list with exactly one ET prefix
per-node-custom-implementation     a YAML file mapping node ids to ET prefixes
boost-mode                         accepted, not read by ASTRA-sim at 518bd51
intra-/inter-dimension-scheduling  documented upstream, ignored by the code
=================================  =============================================  ==========

``<coll>`` is all-reduce, reduce-scatter, all-gather or all-to-all. Any other key is an
error naming the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from deepflow.errors import TraceError
from deepflow.interop.astra._files import (
    flag,
    integer,
    number,
    parse_json_object,
    read_text,
    string,
    string_list,
)

__all__ = [
    "CollectiveImpl",
    "CollectiveOptimization",
    "SchedulingPolicy",
    "SystemConfig",
    "load_system",
    "parse_system",
]


class SchedulingPolicy(str, Enum):
    LIFO = "LIFO"
    FIFO = "FIFO"
    EXPLICIT = "EXPLICIT"


class CollectiveOptimization(str, Enum):
    BASELINE = "baseline"
    LOCAL_BW_AWARE = "localBWAware"


class CollectiveImpl(str, Enum):
    """Native collective algorithms (``CollectiveImplLookup``)."""

    RING = "ring"
    ONE_RING = "oneRing"
    DIRECT = "direct"
    ONE_DIRECT = "oneDirect"
    HALVING_DOUBLING = "halvingDoubling"
    ONE_HALVING_DOUBLING = "oneHalvingDoubling"
    DOUBLE_BINARY_TREE = "doubleBinaryTree"
    NCCL_DOUBLE_BINARY_TREE = "ncclDoubleBinaryTree"
    """deepflow's own name, not ASTRA-sim's (which rejects it): NCCL's double binary tree,
    two trees each carrying half of the data (:mod:`deepflow.interop.astra.analytical`)."""


_COLLECTIVES = ("all-reduce", "reduce-scatter", "all-gather", "all-to-all")


@dataclass(frozen=True)
class SystemConfig:
    """An ASTRA-sim system configuration. Times in s, bandwidths in bytes/s, rates in
    FLOP/s. An implementation tuple has one entry per network dimension; ``None`` for a
    ``*_custom`` field means no custom (ET) implementation."""

    scheduling_policy: SchedulingPolicy = SchedulingPolicy.LIFO
    collective_optimization: CollectiveOptimization = CollectiveOptimization.BASELINE
    endpoint_delay_s: float = 10e-9
    local_reduction_delay_s: float = 1e-9
    active_chunks_per_dimension: int = 1
    preferred_dataset_splits: int = 1
    all_reduce_implementation: tuple[CollectiveImpl, ...] = ()
    reduce_scatter_implementation: tuple[CollectiveImpl, ...] = ()
    all_gather_implementation: tuple[CollectiveImpl, ...] = ()
    all_to_all_implementation: tuple[CollectiveImpl, ...] = ()
    all_reduce_implementation_custom: str | None = None
    reduce_scatter_implementation_custom: str | None = None
    all_gather_implementation_custom: str | None = None
    all_to_all_implementation_custom: str | None = None
    per_node_custom_implementation: str | None = None
    peak_perf_flops: float | None = None
    local_mem_bw_Bps: float | None = None
    roofline_enabled: bool = False
    trace_enabled: bool = False
    replay_only: bool = False
    track_local_mem: bool = False
    local_mem_trace_filename: str | None = None
    loggp_L: float = 0.0
    loggp_o: float = 0.0
    loggp_g: float = 0.0
    loggp_G: float = 0.0
    model_shared_bus: bool = False
    boost_mode: bool = False
    intra_dimension_scheduling: str | None = None
    inter_dimension_scheduling: str | None = None
    source: str = field(default="<system>", compare=False)

    def implementation(self, collective: str) -> tuple[CollectiveImpl, ...]:
        """Native implementations of ``collective`` (``"all-reduce"`` ...), per dimension."""
        return getattr(self, collective.replace("-", "_") + "_implementation")  # type: ignore[no-any-return]

    def custom_implementation(self, collective: str) -> str | None:
        """The custom ET prefix of ``collective``, or ``None``."""
        return getattr(self, collective.replace("-", "_") + "_implementation_custom")  # type: ignore[no-any-return]


def _enum(enum_cls: type[Enum], value: object, source: str, key: str) -> Any:
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in enum_cls)
        raise TraceError(f"{source}: {key}: {value!r} is not one of {allowed}") from None


def _ns(value: object, source: str, key: str) -> float:
    return number(value, source, key, minimum=0) * 1e-9


def _implementations(value: object, source: str, key: str) -> tuple[CollectiveImpl, ...]:
    names = string_list(value, source, key)
    return tuple(_enum(CollectiveImpl, n, source, f"{key}[{i}]") for i, n in enumerate(names))


def _custom(value: object, source: str, key: str) -> str:
    prefixes = string_list(value, source, key)
    if len(prefixes) != 1:
        raise TraceError(
            f"{source}: {key}: expected exactly one ET prefix (it covers all dimensions), "
            f"found {len(prefixes)}"
        )
    return prefixes[0]


_SCALARS = {
    "scheduling-policy": ("scheduling_policy", lambda v, s, k: _enum(SchedulingPolicy, v, s, k)),
    "collective-optimization": (
        "collective_optimization",
        lambda v, s, k: _enum(CollectiveOptimization, v, s, k),
    ),
    "endpoint-delay": ("endpoint_delay_s", _ns),
    "local-reduction-delay": ("local_reduction_delay_s", _ns),
    "active-chunks-per-dimension": (
        "active_chunks_per_dimension",
        lambda v, s, k: integer(v, s, k, minimum=1),
    ),
    "preferred-dataset-splits": (
        "preferred_dataset_splits",
        lambda v, s, k: integer(v, s, k, minimum=1),
    ),
    # TFLOP/s -> FLOP/s; GB/s (1e9 bytes, not 2**30) -> bytes/s (reference doc section 2.3)
    "peak-perf": ("peak_perf_flops", lambda v, s, k: number(v, s, k, minimum=0) * 1e12),
    "local-mem-bw": ("local_mem_bw_Bps", lambda v, s, k: number(v, s, k, minimum=0) * 1e9),
    "roofline-enabled": ("roofline_enabled", flag),
    "trace-enabled": ("trace_enabled", flag),
    "replay-only": ("replay_only", flag),
    "track-local-mem": ("track_local_mem", flag),
    "local-mem-trace-filename": ("local_mem_trace_filename", string),
    "L": ("loggp_L", lambda v, s, k: number(v, s, k, minimum=0)),
    "o": ("loggp_o", lambda v, s, k: number(v, s, k, minimum=0)),
    "g": ("loggp_g", lambda v, s, k: number(v, s, k, minimum=0)),
    "G": ("loggp_G", lambda v, s, k: number(v, s, k, minimum=0)),
    "model-shared-bus": ("model_shared_bus", flag),
    "boost-mode": ("boost_mode", flag),
    "intra-dimension-scheduling": ("intra_dimension_scheduling", string),
    "inter-dimension-scheduling": ("inter_dimension_scheduling", string),
    "per-node-custom-implementation": ("per_node_custom_implementation", string),
}
for _coll in _COLLECTIVES:
    _field = _coll.replace("-", "_")
    _SCALARS[f"{_coll}-implementation"] = (f"{_field}_implementation", _implementations)
    _SCALARS[f"{_coll}-implementation-custom"] = (f"{_field}_implementation_custom", _custom)


def parse_system(text: str, source: str = "<system>") -> SystemConfig:
    """Parse the text of a system JSON."""
    data = parse_json_object(text, source)
    fields: dict[str, Any] = {"source": source}
    for key, value in data.items():
        if key not in _SCALARS:
            raise TraceError(f"{source}: {key}: unknown system configuration key")
        name, convert = _SCALARS[key]
        fields[name] = convert(value, source, key)
    return SystemConfig(**fields)


def load_system(path: str | os.PathLike[str]) -> SystemConfig:
    """Load an ASTRA-sim system JSON."""
    text, source = read_text(path)
    return parse_system(text, source)
