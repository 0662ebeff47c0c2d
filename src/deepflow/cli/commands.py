"""Imports every subcommand module so that each registers itself on :data:`main`."""

from deepflow.cli import (
    arch,  # noqa: F401
    calibrate,  # noqa: F401
    collective,  # noqa: F401
    compare,  # noqa: F401
    et,  # noqa: F401
    kernels,  # noqa: F401
    opsearch,  # noqa: F401
    plan,  # noqa: F401
    predict,  # noqa: F401
    presets,  # noqa: F401
    report,  # noqa: F401
    search,  # noqa: F401
    simulate,  # noqa: F401
    validate,  # noqa: F401
)
