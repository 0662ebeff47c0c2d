"""deepflow.workload layer (see docs/DESIGN.md)."""
