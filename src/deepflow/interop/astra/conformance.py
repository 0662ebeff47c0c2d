"""Run the ASTRA-sim conformance cases: deepflow's replay against real ASTRA-sim output.

The cases (``tests/fixtures/astra-sim/conformance/``, its README says what each family
tests) pair ASTRA-sim's inputs (workload ETs, system JSON, network YAML, communicator groups)
with the per-rank finish times that ASTRA-sim ``518bd51`` printed with its two analytical
backends, congestion-unaware (``CU``) and congestion-aware (``CA``). :func:`run_case`
rebuilds a case's inputs as the README's "How a row maps to ``deepflow et simulate``"
describes and replays them with :func:`~deepflow.interop.astra.simulate_workload` under the
matching backend; :func:`load_cases` reads ``cases.csv``.

Inputs that are not files in the fixtures are rebuilt in a scratch folder once per
:class:`CaseInputs`: the generated microbenchmarks (unpacked from
``generated_workloads.tar.gz``), the MSCCL-IR algorithms converted to per-rank ETs
(``deepflow et convert``, 1 MiB, 50 GB/s), and the ``D5`` variants of Chakra's
PyTorch-derived trace (the README's "CPU-side communication nodes").
"""

from __future__ import annotations

import csv
import os
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import ClassVar

from deepflow.errors import TraceError
from deepflow.interop.astra.executor import Backend, simulate_workload
from deepflow.interop.astra.groups import load_comm_groups
from deepflow.interop.astra.network import load_network
from deepflow.interop.astra.system import load_system
from deepflow.interop.chakra.checks import DependencyPolicy
from deepflow.interop.chakra.codec import decode_et, read_workload, write_workload
from deepflow.interop.chakra.model import ExecutionTrace, NodeType
from deepflow.interop.msccl import msccl_to_chakra, read_msccl

__all__ = ["Case", "CaseInputs", "CaseResult", "load_cases", "run_case"]


@dataclass(frozen=True)
class Case:
    """One row of ``cases.csv`` (times in ns; the column meanings are in the README)."""

    case_id: str
    family: str
    backend: Backend
    row: Mapping[str, str] = field(repr=False, compare=False)

    @property
    def makespan_ns(self) -> int:
        return int(self.row["astra_makespan_ns"])

    @property
    def rank_finish_ns(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.row["astra_rank_finish_ns"].split(";"))

    @property
    def rank_exposed_comm_ns(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.row["astra_rank_exposed_comm_ns"].split(";"))


@dataclass(frozen=True)
class CaseResult:
    """deepflow's result on a case next to ASTRA-sim's."""

    case: Case
    makespan_ns: int
    rank_finish_ns: tuple[int, ...]
    rank_exposed_comm_ns: tuple[int, ...]

    @property
    def rel_diff(self) -> float:
        """``(deepflow - ASTRA-sim) / ASTRA-sim`` on the makespan."""
        return (self.makespan_ns - self.case.makespan_ns) / self.case.makespan_ns

    @property
    def worst_rank_rel_diff(self) -> float:
        """The largest ``|deepflow - ASTRA-sim| / ASTRA-sim`` over the ranks."""
        return max(
            abs(a - b) / b
            for a, b in zip(self.rank_finish_ns, self.case.rank_finish_ns, strict=True)
        )

    @property
    def exact(self) -> bool:
        """Equal makespan, per-rank finish times and exposed communication."""
        return (
            self.makespan_ns == self.case.makespan_ns
            and self.rank_finish_ns == self.case.rank_finish_ns
            and self.rank_exposed_comm_ns == self.case.rank_exposed_comm_ns
        )


def load_cases(path: str | os.PathLike[str]) -> list[Case]:
    """Read ``cases.csv``: one :class:`Case` per case and backend."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    backends = {"CU": Backend.CONGESTION_UNAWARE, "CA": Backend.CONGESTION_AWARE}
    return [Case(r["case_id"], r["family"], backends[r["backend"]], r) for r in rows]


# The D5 edits of Chakra's PyTorch-derived trace (conformance README, "CPU-side
# communication nodes"); ``transform`` names them.
def _drop_ctrl(trace: ExecutionTrace, keep: set[int] | None = None) -> ExecutionTrace:
    nodes = tuple(
        replace(n, ctrl_deps=tuple(d for d in n.ctrl_deps if keep is not None and d in keep))
        for n in trace.nodes
    )
    return replace(trace, nodes=nodes)


def _cpu_comm_to_comp(trace: ExecutionTrace) -> ExecutionTrace:
    nodes = tuple(
        replace(n, type=NodeType.COMP_NODE)
        if n.type is NodeType.COMM_COLL_NODE and n.attr_value("is_cpu_op") is True
        else n
        for n in trace.nodes
    )
    return replace(trace, nodes=nodes)


def _transform(trace: ExecutionTrace, transform: str) -> ExecutionTrace:
    if transform == "none":
        return trace
    if transform == "drop_ctrl_deps":
        return _drop_ctrl(trace)
    if transform == "drop_ctrl_deps+cpu_comm_coll_to_comp":
        return _cpu_comm_to_comp(_drop_ctrl(trace))
    if transform == "drop_dangling_ctrl_deps":
        return _drop_ctrl(trace, keep={n.id for n in trace.nodes})
    raise TraceError(f"cases.csv: transform: {transform!r} is not a known D5 edit")


class CaseInputs:
    """Builds the inputs of cases from the fixtures root ``fixtures`` (the folder holding
    ``astra-sim/``, ``chakra/`` and ``msccl/``), with ``scratch`` for rebuilt files."""

    def __init__(self, fixtures: str | os.PathLike[str], scratch: str | os.PathLike[str]):
        self.fixtures = os.fspath(fixtures)
        self.scratch = os.fspath(scratch)
        self._generated: str | None = None
        self._workloads: dict[tuple[str, str], dict[int, ExecutionTrace]] = {}
        self._custom: dict[str, str] = {}

    # files the shared fixture tree holds twice; the repository keeps one copy
    _ALIASES: ClassVar[dict[str, str]] = {
        "msccl/custom_allreduce.xml": "astra-sim/examples/system/custom_collectives/"
        "custom_ring_allreduce_8npus_1MB/custom_allreduce.xml",
    }

    def path(self, relative: str) -> str:
        path = os.path.join(self.fixtures, relative)
        if not os.path.exists(path) and relative in self._ALIASES:
            path = os.path.join(self.fixtures, self._ALIASES[relative])
        return path

    def generated(self) -> str:
        """The folder ``generated_workloads.tar.gz`` is unpacked into (once)."""
        if self._generated is None:
            out = os.path.join(self.scratch, "generated")
            archive = self.path("astra-sim/conformance/generated_workloads.tar.gz")
            with tarfile.open(archive) as tar:
                tar.extractall(out, filter="data")
            self._generated = out
        return self._generated

    def workload(self, case: Case) -> dict[int, ExecutionTrace]:
        row = case.row
        key = (
            row.get("workload_path", "") or row.get("generated_workload", ""),
            row.get("transform", ""),
        )
        if key not in self._workloads:
            if row.get("transform", ""):
                self._workloads[key] = self._d5(row)
            elif row.get("workload_path", ""):
                self._workloads[key] = read_workload(self.path(row.get("workload_path", "")))
            else:
                prefix = os.path.join(self.generated(), row.get("generated_workload", ""))
                self._workloads[key] = read_workload(prefix)
        return self._workloads[key]

    def _d5(self, row: Mapping[str, str]) -> dict[int, ExecutionTrace]:
        archive, _, member = row.get("derived_from", "").partition(":")
        if not member:
            archive, member = "chakra/feeder_tests_trace.tar.gz", "tests/data/chakra.0.et"
        with tarfile.open(self.path(archive)) as tar:
            fh = tar.extractfile(member)
            assert fh is not None
            trace = decode_et(fh.read(), f"{archive}:{member}")
        edited = _transform(trace, row.get("transform", ""))
        return {rank: edited for rank in range(int(row["npus"]))}

    def custom_dir(self, case: Case) -> str | None:
        row = case.row
        if row.get("msccl_xml", ""):
            xml = row.get("msccl_xml", "")
            if xml not in self._custom:
                base = os.path.join(self.scratch, "msccl")
                algo = read_msccl(self.path(xml))
                traces = msccl_to_chakra(algo, int(row["size_bytes"]), 50e9)
                prefix = os.path.join(base, row.get("custom_et_prefix", ""))
                os.makedirs(os.path.dirname(prefix), exist_ok=True)
                write_workload(traces, prefix)
                self._custom[xml] = base
            return self._custom[xml]
        if row.get("custom_dir", ""):
            return self.path(row.get("custom_dir", ""))
        return None


def run_case(case: Case, inputs: CaseInputs) -> CaseResult:
    """Replay ``case`` with deepflow under the case's backend."""
    row = case.row
    groups = (
        load_comm_groups(inputs.path(row.get("comm_groups_json", "")))
        if row.get("comm_groups_json", "")
        else None
    )
    result = simulate_workload(
        inputs.workload(case),
        load_network(inputs.path(row["network_yaml"])),
        load_system(inputs.path(row["system_json"])),
        groups,
        DependencyPolicy.DATA_AND_CTRL,
        custom_dir=inputs.custom_dir(case),
        backend=case.backend,
    )
    return CaseResult(
        case,
        result.makespan_ns,
        tuple(r.finish_ns for r in result.ranks),
        tuple(r.exposed_comm_ns for r in result.ranks),
    )
