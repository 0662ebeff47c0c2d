"""deepflow.virtual layer (see docs/DESIGN.md)."""
