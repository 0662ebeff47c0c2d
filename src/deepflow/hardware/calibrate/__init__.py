"""``deepflow calibrate``: measure the local accelerator with PyTorch.

GEMMs, grouped GEMMs, attention, memory bandwidth, element-wise kernels, collectives (with
several GPUs) and per-operator profiles, written as a calibration file (schema
``deepflow.calibration/1``, :mod:`deepflow.hardware.calibrate.io`). PyTorch is an optional
extra, imported only when a calibration runs. The fit of the efficiency model to these
measurements lives beside this package, not in it.
"""

from deepflow.hardware.calibrate.io import (
    SCHEMA,
    check_output_path,
    read_calibration,
    validate_calibration,
    write_calibration,
)
from deepflow.hardware.calibrate.profiles import OperatorProfiles, ProfileTime, profile_key
from deepflow.hardware.calibrate.runner import (
    SECTIONS,
    CalibrationOptions,
    CalibrationRun,
    parse_dtypes,
    parse_sections,
    resolve_device,
    run_calibration,
)

__all__ = [
    "SCHEMA",
    "SECTIONS",
    "CalibrationOptions",
    "CalibrationRun",
    "OperatorProfiles",
    "ProfileTime",
    "check_output_path",
    "parse_dtypes",
    "parse_sections",
    "profile_key",
    "read_calibration",
    "resolve_device",
    "run_calibration",
    "validate_calibration",
    "write_calibration",
]
