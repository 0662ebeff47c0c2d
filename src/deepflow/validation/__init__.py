"""deepflow.validation layer (see docs/DESIGN.md)."""
