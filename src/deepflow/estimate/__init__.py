"""deepflow.estimate layer (see docs/DESIGN.md)."""
