"""Technology library and micro-architecture generator: technology + budgets ->
accelerator spec (docs/DESIGN.md, layer ``tech``; reference ``crossflow-deepflow.md``)."""

from deepflow.tech.design import (
    Allocation,
    Budget,
    DesignSpec,
    Limits,
    Technology,
    design_from,
    load_design,
)
from deepflow.tech.generator import (
    EnergyModel,
    GeneratedAccelerator,
    MemoryHierarchy,
    OperatingPoint,
    PowerLimit,
    SramLevel,
    generate,
    solve_operating_point,
)
from deepflow.tech.library import (
    LinkTechnology,
    MemoryTechnology,
    MicroArchitecture,
    Packaging,
    ProcessNode,
    link_technology,
    memory_technology,
    microarchitecture,
    names,
    packaging,
    process_node,
)

__all__ = [
    "Allocation",
    "Budget",
    "DesignSpec",
    "EnergyModel",
    "GeneratedAccelerator",
    "Limits",
    "LinkTechnology",
    "MemoryHierarchy",
    "MemoryTechnology",
    "MicroArchitecture",
    "OperatingPoint",
    "Packaging",
    "PowerLimit",
    "ProcessNode",
    "SramLevel",
    "Technology",
    "design_from",
    "generate",
    "link_technology",
    "load_design",
    "memory_technology",
    "microarchitecture",
    "names",
    "packaging",
    "process_node",
    "solve_operating_point",
]
