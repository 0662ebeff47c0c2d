"""deepflow.sim layer (see docs/DESIGN.md)."""
