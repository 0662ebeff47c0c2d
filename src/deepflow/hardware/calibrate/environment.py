"""Which accelerator a calibration runs on, and the software it ran with.

PyTorch is an optional extra (``pip install 'deepflow[torch]'``) and is imported inside the
functions, never at module import, so that the rest of deepflow loads without it.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from deepflow.errors import ConfigError

__all__ = ["BACKENDS", "DeviceInfo", "describe_environment", "import_torch", "select_device"]

BACKENDS = ("cuda", "rocm", "cpu")
"""Values of ``device.backend`` in a calibration file; ``--device`` also takes ``auto``."""


def import_torch() -> Any:
    """Import PyTorch or raise a one-line :class:`ConfigError` saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ConfigError(
            "PyTorch is not installed, and calibration runs kernels with it; "
            "install the optional extra: pip install 'deepflow[torch]'",
            "--device",
        ) from None
    return torch


@dataclass(frozen=True)
class DeviceInfo:
    """The device a calibration measures: ``backend`` is ``cuda``, ``rocm`` or ``cpu``;
    ``torch_device`` the string PyTorch takes (ROCm builds use ``cuda`` too); ``count`` the
    visible devices of that kind (collectives need more than one)."""

    backend: str
    name: str
    count: int
    torch_device: str
    properties: dict[str, object]

    @property
    def is_gpu(self) -> bool:
        return self.backend != "cpu"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def select_device(requested: str, torch: Any) -> DeviceInfo:
    """Resolve ``--device`` (``cuda``, ``rocm``, ``cpu`` or ``auto``) against what this
    PyTorch build sees; a GPU that is asked for and absent is a :class:`ConfigError`."""
    if requested not in (*BACKENDS, "auto"):
        raise ConfigError(
            f"must be one of {', '.join((*BACKENDS, 'auto'))}, got {requested!r}", "--device"
        )
    hip = getattr(torch.version, "hip", None)
    gpu_backend = "rocm" if hip else "cuda"
    available = bool(torch.cuda.is_available())
    if requested == "auto":
        requested = gpu_backend if available else "cpu"
    if requested == "cpu":
        return DeviceInfo(
            "cpu",
            _cpu_name(),
            1,
            "cpu",
            {"threads": int(torch.get_num_threads()), "cores": os.cpu_count() or 1},
        )
    if requested != gpu_backend or not available:
        build = f"PyTorch {torch.__version__}"
        if requested != gpu_backend and available:
            why = f"this is a {gpu_backend.upper()} build ({build}); use --device {gpu_backend}"
        else:
            why = f"torch.cuda.is_available() is False ({build}, no {requested} device visible)"
        raise ConfigError(f"{requested} requested, but {why}", "--device")
    props = torch.cuda.get_device_properties(0)
    info: dict[str, object] = {
        "compute_capability": f"{props.major}.{props.minor}",
        "multiprocessors": int(props.multi_processor_count),
        "memory_bytes": int(props.total_memory),
    }
    l2 = getattr(props, "L2_cache_size", None)
    if l2:
        info["l2_bytes"] = int(l2)
    if hip:
        info["gcn_arch"] = str(getattr(props, "gcnArchName", ""))
    return DeviceInfo(
        requested, str(torch.cuda.get_device_name(0)), int(torch.cuda.device_count()), "cuda", info
    )


def _driver_version(backend: str) -> str | None:
    cmd = (
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        if backend == "cuda"
        else ["rocm-smi", "--showdriverversion"]
        if backend == "rocm"
        else None
    )
    if cmd is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    text = out.stdout.strip().splitlines()
    return text[0].strip() if out.returncode == 0 and text else None


def describe_environment(device: DeviceInfo, torch: Any, command: str) -> dict[str, object]:
    """The ``environment`` section of a calibration file: software versions (PyTorch, CUDA
    or HIP, driver, cuDNN, NCCL/RCCL, Python), the date (UTC, ISO 8601), the exact command
    line, the host CPU and the device's properties."""
    cudnn = None
    nccl = None
    if device.is_gpu:
        try:
            v = torch.backends.cudnn.version()
            cudnn = int(v) if v is not None else None
        except Exception:  # cuDNN missing from this build
            cudnn = None
        try:
            nv = torch.cuda.nccl.version()
            nccl = ".".join(str(x) for x in nv) if isinstance(nv, tuple) else str(nv)
        except Exception:  # NCCL missing from this build
            nccl = None
    env: dict[str, object] = {
        "torch": str(torch.__version__),
        "cuda": getattr(torch.version, "cuda", None),
        "hip": getattr(torch.version, "hip", None),
        "driver": _driver_version(device.backend),
        "cudnn": cudnn,
        "nccl": nccl,
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "host_cpu": _cpu_name(),
        "platform": f"{sys.platform} {platform.machine()}",
    }
    env.update(device.properties)
    return env
