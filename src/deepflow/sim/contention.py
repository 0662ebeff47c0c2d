"""Link contention in the training-step simulator (``deepflow simulate --contention``).

Without contention, a communication task of the lowered graph holds its stream for the
closed-form time of its collective, as if it had the links to itself. In a real step,
collectives of different mesh axes that run at the same time share links: the data-parallel
gradient buckets (on the ``dp`` stream) overlap the expert all-to-alls and tensor- and
context-parallel collectives of the backward pass (on the compute stream) and the pipeline
sends (on the ``pp`` stream); when two of them cross the same NICs, or the same NVLink
ports, each slows the other.

This module runs those tasks on the same link engine as ASTRA-sim's congestion-aware
replay, :class:`deepflow.network.links.LinkNetwork` (FIFO store-and-forward links,
astra-network-analytical ``congestion_aware/network/Link.cpp``):

* every simulated rank has two ports, ``scale-out`` (its NIC) and ``scale-up`` (its NVLink
  port); a communication task loads the port of the slowest fabric its group crosses:
  ``scale-out`` when the group spans more than one scale-up domain
  (:class:`deepflow.network.hierarchy.GroupPlacement` ``domains > 1``; for pipeline sends
  ``Env.pp_crosses_domain``), else ``scale-up``;
* the task is cut into :data:`SPLITS` chunks (as ASTRA-sim cuts a collective into
  ``preferred-dataset-splits`` streams); a chunk occupies the port for its share of the
  task's closed-form time (the port's bandwidth is one second of that time per second), and
  the task sends its next chunk when the previous one has crossed. Two tasks on one port
  therefore alternate chunks, each at half speed, and the port stays busy without gaps:
  work-conserving, first come first served at chunk granularity.

Approximations, stated:

* the whole closed-form time of a task occupies its port, latency terms included, and a
  hierarchical collective (NVLink inside the domain, NICs across) is charged to the NIC
  alone;
* a pipeline send loads the sender's NIC only (not the receiver's);
* only concurrent tasks of one representative rank meet: ranks with identical programs are
  simulated once (:mod:`deepflow.sim.lowering`), and each representative stands for its
  own pipeline stage, whose ports no other stage's representative uses. Tensor- and
  context-parallel collectives both run on the compute stream, one after the other, so in
  this lowering they never overlap each other, only the ``dp`` and ``pp`` streams' tasks.

A task alone on its port ends exactly (up to float rounding of the chunk sum) when it
would without contention; with contention a task never ends earlier, and the sum of the
busy times on a port is unchanged (the slowdown is redistribution, not extra traffic).
The closed-form estimator does not model this (``deepflow.estimate.evaluate``): it takes
the gradient all-reduce as hidden behind the backward pass at its full bandwidth; the
agreement test (``tests/sim/test_contention.py``) bounds the difference on contended
scenarios.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from deepflow.estimate.context import Env
from deepflow.graph.ir import Task, TaskKind
from deepflow.network.links import LinkNetwork
from deepflow.sim.engine import Environment

__all__ = ["SCALE_OUT", "SCALE_UP", "SPLITS", "Contention", "ports_of"]

SCALE_OUT, SCALE_UP = "scale-out", "scale-up"

SPLITS = 8
"""Chunks per communication task (the granularity at which concurrent tasks share a port)."""

_COMM_KINDS = (TaskKind.COLLECTIVE, TaskKind.SEND, TaskKind.RECV)


def _port(domains: object) -> str:
    return SCALE_OUT if float(_first(domains)) > 1 else SCALE_UP


def _first(x: object) -> float:
    return float(np.asarray(x, dtype=np.float64).ravel()[0])


def ports_of(env: Env) -> dict[str, str]:
    """The port each communication category loads (see the module docstring)."""
    return {
        "tp_comm": _port(env.tp_group.domains),
        "cp_comm": _port(env.cp_group.domains),
        "ep_comm": _port(env.ep_group.domains),
        "dp_comm": _port(env.dp_groups.grad.domains),
        "pp_comm": SCALE_OUT if bool(_first(env.pp_crosses_domain)) else SCALE_UP,
    }


class Contention:
    """The ports of the simulated ranks as links of a :class:`LinkNetwork` on the
    executor's clock; :meth:`run` plays one communication task on them."""

    def __init__(self, ports: dict[str, str], splits: int = SPLITS) -> None:
        if splits < 1:
            raise ValueError(f"splits must be at least 1, got {splits}")
        self.ports = ports
        self.splits = splits
        self.env: Environment | None = None
        self.network: LinkNetwork | None = None
        self.busy_s: dict[tuple[int, str], float] = {}

    def bind(self, env: Environment) -> None:
        """Attach to the executor's event kernel (one run)."""
        self.env = env
        self.network = LinkNetwork([], self._schedule)
        self.busy_s = {}

    def _schedule(self, delay: float, fn: Callable[[], None]) -> None:
        assert self.env is not None
        ev = self.env.timeout(delay)
        ev.callbacks.append(lambda _e: fn())  # type: ignore[union-attr]

    def port_of(self, task: Task) -> str | None:
        """The port ``task`` loads, or ``None`` (compute, or a zero-length task)."""
        if task.kind not in _COMM_KINDS or task.duration_s <= 0:
            return None
        return self.ports.get(task.category)

    def run(self, task: Task, port: str, done: Callable[[], None]) -> None:
        """Send ``task``'s chunks one after the other over ``port`` of its rank; ``done()``
        when the last has crossed."""
        assert self.network is not None
        route = self.network.named_route([(task.rank, port)], bandwidth=1.0)
        key = (task.rank, port)
        self.busy_s[key] = self.busy_s.get(key, 0.0) + task.duration_s
        piece = task.duration_s / self.splits
        left = [self.splits]
        network = self.network

        def next_chunk() -> None:
            if left[0] == 0:
                done()
                return
            left[0] -= 1
            network.send_route(route, piece, next_chunk)

        next_chunk()
