"""deepflow.tech layer (see docs/DESIGN.md)."""
