"""deepflow.search layer (see docs/DESIGN.md)."""
