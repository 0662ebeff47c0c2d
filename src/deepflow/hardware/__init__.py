"""deepflow.hardware layer (see docs/DESIGN.md)."""
