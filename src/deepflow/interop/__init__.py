"""deepflow.interop layer (see docs/DESIGN.md)."""
