"""The execution simulator: a deterministic discrete-event engine (:mod:`.engine`),
pipeline schedules as tables (:mod:`.schedules`), the lowering of a scenario to per-rank
task graphs (:mod:`.lowering`), the executor (:mod:`.executor`) and timelines
(:mod:`.trace`). See docs/simulator.md."""

from deepflow.sim.executor import DeadlockError, Execution, breakdown, execute
from deepflow.sim.lowering import Lowered, lower
from deepflow.sim.schedules import Op, Table, table_for
from deepflow.sim.simulate import Simulation, simulate
from deepflow.sim.trace import chrome_trace, write_trace

__all__ = [
    "DeadlockError",
    "Execution",
    "Lowered",
    "Op",
    "Simulation",
    "Table",
    "breakdown",
    "chrome_trace",
    "execute",
    "lower",
    "simulate",
    "table_for",
    "write_trace",
]
