"""Per-device cost model: roofline, GEMM tile and wave quantization, memory-bound kernels."""

from deepflow.hardware.roofline import gemm_efficiency, gemm_time, memory_time

__all__ = ["gemm_efficiency", "gemm_time", "memory_time"]
