"""Hardware/software co-design: design points evaluated with their best strategy,
gradient-based and multi-objective search over allocations, sensitivity, energy and cost
(DeepFlow, arXiv 2211.03309; reference ``crossflow-deepflow.md`` sec. 5)."""
