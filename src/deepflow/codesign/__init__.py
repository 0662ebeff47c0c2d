"""Hardware/software co-design: search over technology-derived accelerators (DeepFlow)."""
