"""The task-graph IR: compute, communication and memory tasks with dependencies, shaped
like a Chakra execution-trace node set (see :mod:`deepflow.graph.ir`)."""

from deepflow.graph.ir import GraphBuilder, Task, TaskGraph, TaskKind, topological_order

__all__ = ["GraphBuilder", "Task", "TaskGraph", "TaskKind", "topological_order"]
