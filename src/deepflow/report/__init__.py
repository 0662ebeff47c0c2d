"""deepflow.report layer (see docs/DESIGN.md)."""
