"""deepflow.graph layer (see docs/DESIGN.md)."""
