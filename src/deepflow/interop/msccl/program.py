"""MSCCL-IR algorithm -> :class:`~deepflow.network.programs.StepProgram`.

The network layer costs a collective algorithm given as per-rank steps without knowing
MSCCL-IR; this module is the translation. Each rank's non-``nop`` steps, in the dependency
order of :func:`~deepflow.interop.msccl.schedule.rank_schedules`, become program steps:

* a receiving step (``r``, ``rrc``, ``rrs``, ``rrcs``, ``rcs``) receives ``cnt`` chunks from
  the threadblock's ``recv`` peer on its channel; a sending step (``s``, ``rrs``, ``rrcs``,
  ``rcs``) sends ``cnt`` chunks to its ``send`` peer; the fused kinds do both, the receive
  first (reference doc section 3, "Step types");
* ``cpy`` and ``re`` are local steps (no message); ``reduce`` is set for the reducing kinds;
* dependencies are program order in the threadblock and ``depid``/``deps``, with ``nop``
  steps forwarded, exactly as the Chakra conversion wires them (:mod:`.to_chakra`).

Sizes follow the network layer's convention (a rank's full buffer; the gathered output of
an all-gather), so a chunk is ``size / nchunksperloop``: ``nchunksperloop`` is the largest
buffer in chunks (reference doc section 3), the all-reduce vector, the all-gather output,
the all-to-all and reduce-scatter input.
"""

from __future__ import annotations

import os
from pathlib import Path

from deepflow.errors import ConfigError, DeepflowError, TraceError
from deepflow.interop.msccl.dataflow import verify_collective
from deepflow.interop.msccl.ir import MscclAlgorithm, MscclCollective, read_msccl
from deepflow.interop.msccl.schedule import rank_schedules
from deepflow.network.ops import Collective
from deepflow.network.programs import ProgramAlgorithm, ProgramStep, StepProgram
from deepflow.specs.strategy import StrategySpec

__all__ = [
    "AXIS_COLLECTIVES",
    "COLLECTIVE_OF",
    "msccl_algorithm",
    "msccl_to_program",
    "strategy_algorithms",
]

COLLECTIVE_OF = {
    MscclCollective.ALLREDUCE: Collective.ALL_REDUCE,
    MscclCollective.ALLGATHER: Collective.ALL_GATHER,
    MscclCollective.REDUCE_SCATTER: Collective.REDUCE_SCATTER,
    MscclCollective.ALLTOALL: Collective.ALL_TO_ALL,
    MscclCollective.BROADCAST: Collective.BROADCAST,
    MscclCollective.REDUCE: Collective.REDUCE,
}
"""The network layer's collective for each ``<algo coll=...>`` (``custom`` has none)."""


def msccl_to_program(algo: MscclAlgorithm) -> StepProgram:
    """The per-rank step program of ``algo`` (see the module docstring)."""
    op = COLLECTIVE_OF.get(algo.coll)
    if op is None:
        raise TraceError(
            f"{algo.source}: <algo>: coll={algo.coll.value!r} has no defined result, so it "
            "cannot stand for a collective"
        )
    programs = []
    for _rank, steps in sorted(rank_schedules(algo).items()):
        index = {s.key: i for i, s in enumerate(steps)}
        programs.append(
            tuple(
                ProgramStep(
                    recv_from=s.recv_peer,
                    send_to=s.send_peer,
                    chunks=s.chunks,
                    channel=s.channel,
                    reduce=s.op.reduces,
                    deps=tuple(sorted(index[k] for k in s.deps)),
                )
                for s in steps
            )
        )
    return StepProgram(algo.name, op, algo.ngpus, algo.nchunksperloop, tuple(programs))


def msccl_algorithm(algo: MscclAlgorithm) -> ProgramAlgorithm:
    """``algo`` as a collective algorithm the network layer can cost and simulate."""
    return ProgramAlgorithm(msccl_to_program(algo))


AXIS_COLLECTIVES = {
    "tp": (Collective.ALL_REDUCE, Collective.REDUCE_SCATTER, Collective.ALL_GATHER),
    "dp": (Collective.ALL_REDUCE, Collective.REDUCE_SCATTER, Collective.ALL_GATHER),
    "ep": (Collective.ALL_TO_ALL,),
}
"""The collectives the estimator runs on each mesh axis (``deepflow.estimate``): Megatron's
tensor-parallel all-reduces (reduce-scatter and all-gather under sequence parallelism), the
data-parallel gradient sync (and ZeRO's gathers), the expert all-to-alls. Context and
pipeline parallelism move data point to point."""


def strategy_algorithms(
    strategy: StrategySpec, base_dir: str | os.PathLike[str] = "."
) -> dict[str, ProgramAlgorithm]:
    """The algorithms named by ``strategy.collective_algorithms``, per mesh axis.

    Each file is read, checked on symbolic data (:func:`verify_collective`) and turned into
    a :class:`ProgramAlgorithm`; relative paths resolve against ``base_dir`` (the scenario
    file's folder). The algorithm must implement a collective the axis runs and be written
    for the axis's degree. Any problem is a :class:`ConfigError` naming the key and the file.
    """
    out: dict[str, ProgramAlgorithm] = {}
    for axis, name in sorted((strategy.collective_algorithms or {}).items()):
        key = f"strategy.collective_algorithms.{axis}"
        path = Path(name)
        if not path.is_absolute():
            path = Path(base_dir) / path
        if axis not in AXIS_COLLECTIVES:
            raise ConfigError(
                f"{path}: the {axis} axis moves data point to point and runs no collective; "
                f"algorithms can be given for {', '.join(AXIS_COLLECTIVES)}",
                key,
            )
        try:
            algo = read_msccl(path)
            verify_collective(algo)
            program = msccl_algorithm(algo)
        except DeepflowError as exc:
            text = str(exc)
            raise ConfigError(text if str(path) in text else f"{path}: {text}", key) from None
        op, ranks = program.program.op, program.program.ranks
        if op not in AXIS_COLLECTIVES[axis]:
            known = ", ".join(c.value for c in AXIS_COLLECTIVES[axis])
            raise ConfigError(
                f"{path}: the algorithm implements {op.value}; the {axis} axis runs {known}",
                key,
            )
        degree = getattr(strategy, axis)
        if ranks != degree:
            raise ConfigError(
                f"{path}: the algorithm is written for {ranks} ranks, but {axis} is {degree}",
                key,
            )
        out[axis] = program
    return out
