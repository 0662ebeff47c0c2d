"""deepflow.parallel layer (see docs/DESIGN.md)."""
