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

from deepflow.errors import TraceError
from deepflow.interop.msccl.ir import MscclAlgorithm, MscclCollective
from deepflow.interop.msccl.schedule import rank_schedules
from deepflow.network.ops import Collective
from deepflow.network.programs import ProgramAlgorithm, ProgramStep, StepProgram

__all__ = ["COLLECTIVE_OF", "msccl_algorithm", "msccl_to_program"]

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
