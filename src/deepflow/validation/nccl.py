"""NCCL all-reduce inside one node: the network model against vTrain's measured tables.

The model is NCCL's own ring all-reduce cost (the Simple protocol), on a topology:

    T(S, n) = L_base + 2 (n-1) L_step + 2 (n-1)/n * S / (eta * R * b)

* ``L_base`` = 8.4 us and ``L_step`` = 3.4 us: NCCL's published latency model for the ring
  algorithm with the Simple protocol over NVLink, ``baseLat`` and ``hwLat[NVLINK][RING]
  [SIMPLE]`` in ``src/graph/tuning.cc`` (NCCL 2.x); a ring all-reduce has ``2 (n-1)``
  steps. The same for both systems.
* ``b``: per-link NVLink bandwidth per direction from the data sheets; ``R``: how many rings
  the node's links carry at once over the ``n`` GPUs (:func:`deepflow.network.ring_count`
  on the link-level topology); ``2 (n-1)/n S / B``: the ring's bus traffic (Patarasuk and
  Yuan, JPDC 2009).
* ``eta``: the fraction of link bandwidth NCCL's Simple protocol reaches on large messages,
  one constant per system, calibrated on the full node: the nccl-tests bus bandwidth of
  all 8 GPUs at 1 GiB (DGX A100 about 230 GB/s; DGX-1V about 134 GB/s). Because the 8-GPU
  table is the calibration measurement, it is reported but not counted in the error: the
  validated rows are the 2 to 7 GPU tables, which the model predicts from the topology.
  ``eta`` is never adjusted per GPU count or per size.

A100 node (8x A100 SXM4 on NVSwitch): every GPU has 12 NVLink-3 links of 25 GB/s per
direction, 300 GB/s into the switch (NVIDIA A100 Tensor Core GPU Architecture white paper,
2020, "Third-generation NVLink"); a switch port carries one ring's worth, R = 1;
eta = 230 / 300.

V100 node (DGX-1 with V100): six NVLink-2 links of 25 GB/s per direction per GPU wired as
the hybrid cube-mesh (:func:`deepflow.network.topologies.hybrid_cube_mesh`), GPUs
``0 .. n-1`` taking part. The ring count is 1, 2, 4, 2, 2, 4, 6 for 2 ... 8 GPUs: two GPUs
share one link, three or four GPUs of a quad close two or four rings, five GPUs reach the
fifth only through GPU 0's double link (two rings, with a hop through a peer), six only
through the single 4-5 link, seven close four rings and eight six. That is the shape of
the measured bus bandwidth (22.5, 45, 85, 37, 46, 87, 134 GB/s at 1 GiB).
eta = 134 / (6 x 25).

Every one of the 1,024 rows of each table is compared (1 MiB to 1 GiB); the error
statistics cover the 2 to 7 GPU tables (6,144 rows per system).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from deepflow.network import Collective, Ring, ring_count
from deepflow.network.topologies import hybrid_cube_mesh, switch
from deepflow.network.topology import LinkGraph
from deepflow.validation.results import DatasetResult, RowResult

MAPE_BOUND = 0.15
GPU_COUNTS = tuple(range(2, 9))
#: the table the bus efficiency is calibrated on, shown but not counted in the error
CALIBRATION_GPUS = 8
SOURCE = (
    "vTrain (Bang et al., MICRO 2024, arXiv 2312.12391), github.com/VIA-Research/vTrain "
    "@ f8dda84, trace/{a100,v100}/AR_GPU<n>_1M_1024M_LUT (MIT)"
)

#: NCCL ring/Simple latency model, src/graph/tuning.cc: baseLat and NVLink hwLat (seconds).
NCCL_BASE_LATENCY = 8.4e-6
NCCL_STEP_LATENCY = 3.4e-6


@dataclass(frozen=True)
class NodeModel:
    """One system's parameters: topology, per-link bandwidth, protocol efficiency."""

    name: str
    description: str
    topology: LinkGraph
    link_bandwidth: float
    efficiency: float
    source: str

    def ring_bandwidth(self, n: int) -> float:
        """Bytes/s per rank of the rings ``n`` GPUs can run at once, after efficiency."""
        rings = ring_count(self.topology, range(n), self.link_bandwidth)
        return rings * self.link_bandwidth * self.efficiency

    def allreduce_time(self, size: object, n: int) -> np.ndarray:
        """Predicted NCCL ring all-reduce time (s) of ``size`` bytes on GPUs ``0..n-1``."""
        ring = Ring().closed_form(
            Collective.ALL_REDUCE, size, n, self.ring_bandwidth(n), NCCL_STEP_LATENCY
        )
        return NCCL_BASE_LATENCY + ring


def a100_node() -> NodeModel:
    """8x A100 SXM4 on NVSwitch: 300 GB/s per GPU and direction, eta = 230/300."""
    return NodeModel(
        "a100",
        "8x A100 SXM4, NVLink-3 through NVSwitch",
        switch(8, 300e9),
        300e9,
        230.0 / 300.0,
        "A100 architecture white paper (2020): 12 NVLink-3 x 25 GB/s per direction; "
        "DGX A100 nccl-tests all_reduce bus bandwidth ~230 GB/s",
    )


def v100_node() -> NodeModel:
    """DGX-1 with V100: NVLink-2 hybrid cube-mesh, 25 GB/s per link, eta = 134/150."""
    return NodeModel(
        "v100",
        "8x V100 SXM2, DGX-1 NVLink-2 hybrid cube-mesh",
        hybrid_cube_mesh(25e9),
        25e9,
        134.0 / 150.0,
        "DGX-1V architecture white paper (2017): 6 NVLink-2 x 25 GB/s per direction per GPU, "
        "hybrid cube-mesh; DGX-1V nccl-tests all_reduce bus bandwidth ~134 GB/s",
    )


@cache
def load_table(gpu: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sizes (bytes) and in-place all-reduce times (s) of one shipped table."""
    path = resources.files("deepflow.validation").joinpath(
        "data", "vtrain", "trace", gpu, f"AR_GPU{n}_1M_1024M_LUT"
    )
    with path.open("r", encoding="utf-8") as fh:
        data = np.loadtxt(fh, delimiter=",", skiprows=1, usecols=(0, 5))
    return data[:, 0], data[:, 1] * 1e-9


#: grid of the per-step latency fit (seconds): 0 to 40 us in 0.1 us steps
_LATENCY_GRID = np.arange(0.0, 40e-6 + 1e-12, 0.1e-6)


@cache
def ring_step_latency(gpu: str, bandwidth: float, efficiency: float) -> float:
    """The per-step latency ``alpha`` (seconds) of deepflow's ring all-reduce,
    ``2 (n-1) (alpha + S / (n eta b))`` (:class:`~deepflow.network.Ring`, the closed form the
    estimator's scale-up level uses), that best describes one GPU type's measured tables:
    the least mean absolute log error over every row of the 2- to 8-GPU tables (1 MiB to
    1 GiB), at the given per-GPU bandwidth ``b`` and bus efficiency ``eta`` (those of the
    system preset the tables are used with), on a 0.1 us grid from 0 to 40 us.

    The estimator's level has no separate base latency (NCCL's ``baseLat``), so the step
    latency absorbs it; the fit is a property of the measured machine, used where that
    machine's training steps are predicted (:func:`deepflow.validation.datasets.
    vtrain_single_cases`)."""
    ring = Ring()
    sizes, measured, ranks = [], [], []
    for n in GPU_COUNTS:
        s, t = load_table(gpu, n)
        sizes.append(s)
        measured.append(t)
        ranks.append(np.full(s.shape, float(n)))
    size, meas, n = (np.concatenate(x) for x in (sizes, measured, ranks))
    errors = [
        np.mean(
            np.abs(
                np.log(
                    ring.closed_form(Collective.ALL_REDUCE, size, n, bandwidth * efficiency, a)
                    / meas
                )
            )
        )
        for a in _LATENCY_GRID
    ]
    return float(_LATENCY_GRID[int(np.argmin(errors))])


def nccl_allreduce_dataset(model: NodeModel) -> DatasetResult:
    """Compare every row of the 2 to 7 GPU tables of one GPU type with the model (the
    8-GPU calibration table's error goes into the notes)."""
    rows: list[RowResult] = []
    sizes8, measured8 = load_table(model.name, CALIBRATION_GPUS)
    calibration_error = float(
        np.mean(np.abs(model.allreduce_time(sizes8, CALIBRATION_GPUS) / measured8 - 1.0))
    )
    for n in GPU_COUNTS:
        if n == CALIBRATION_GPUS:
            continue
        sizes, measured = load_table(model.name, n)
        predicted = model.allreduce_time(sizes, n)
        for size, meas, pred in zip(sizes, measured, predicted, strict=True):
            mib = int(size) // 2**20
            rows.append(
                RowResult(
                    dataset=f"nccl-allreduce-{model.name}",
                    row_id=f"{model.name}-gpu{n}-{mib}MiB",
                    description=f"all-reduce {mib} MiB on {n} {model.name.upper()} GPUs",
                    measured=float(meas),
                    predicted=float(pred),
                )
            )
    rings = ", ".join(
        f"{n}: {ring_count(model.topology, range(n), model.link_bandwidth)}" for n in GPU_COUNTS
    )
    return DatasetResult(
        name=f"nccl-allreduce-{model.name}",
        description=f"NCCL all-reduce, 1 MiB-1 GiB, 2-7 GPUs, {model.description}",
        rows=tuple(rows),
        mape_bound=MAPE_BOUND,
        source=SOURCE,
        notes=(
            f"calibration table ({CALIBRATION_GPUS} GPUs, sets eta; not counted): "
            f"mean abs error {calibration_error:.1%}",
            f"rings per GPU count: {rings}",
            f"eta = {model.efficiency:.3f}; link bandwidth {model.link_bandwidth / 1e9:g} GB/s",
            f"NCCL latency: {NCCL_BASE_LATENCY * 1e6:g} us + 2(n-1) x "
            f"{NCCL_STEP_LATENCY * 1e6:g} us",
            model.source,
        ),
    )


def nccl_allreduce_datasets() -> list[DatasetResult]:
    """The A100 and V100 all-reduce tables against the model, one result per GPU type."""
    return [nccl_allreduce_dataset(a100_node()), nccl_allreduce_dataset(v100_node())]
