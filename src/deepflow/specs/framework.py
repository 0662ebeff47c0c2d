"""Framework implementation profiles (``strategy.framework``): how a training stack runs a layer.

The same model, batch and parallel layout runs at different speeds and memory in different
frameworks, because each launches different kernels for the same operator: a fused RMSNorm
kernel (Transformer Engine, Apex) reads and writes the hidden state once, an eager PyTorch
RMSNorm with an fp32 upcast (ibm-fms ``LayerNormParameterized``, Hugging Face
``LlamaRMSNorm``) launches seven kernels, moves about 18 times as many bytes and keeps an
fp32 copy of its input for the backward pass. A *profile* records, as data with sources:

* the default of each implementation switch of the strategy (``flash_attention``,
  ``fused_epilogues``, ``fp32_main_grads``, ``overlap_grad_reduce``,
  ``overlap_param_gather``), which a scenario may still override;
* per element-wise operator of the layer templates (norm, residual add, activation, rotary
  embedding) and for the loss: the kernels its forward and backward launch, the values each
  reads and writes per element, and the values saved for backward
  (:class:`OperatorImpl`); an operator left out runs the fused kernels of the layer
  template (:mod:`deepflow.workload.transformer`, Megatron's);
* what the framework can run (:class:`Supports`): a strategy outside it is an infeasible
  result with the reason, and ``deepflow search --framework`` searches within it.

Profiles live in ``specs/data/frameworks/<name>.yaml``, one file per framework, each with
its sources. :func:`framework_profile` loads one by name; an unknown name is a
:class:`~deepflow.errors.ConfigError` with "did you mean" and the list of known ones.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources

import yaml
from pydantic import Field

from deepflow.errors import ConfigError
from deepflow.specs.base import Sources, Spec

__all__ = [
    "DEFAULT_FRAMEWORK",
    "FRAMEWORKS",
    "SWITCHES",
    "FrameworkProfile",
    "KernelPass",
    "LossImpl",
    "OperatorImpl",
    "Supports",
    "framework_names",
    "framework_profile",
]

DEFAULT_FRAMEWORK = "megatron-core"
SWITCHES = (
    "flash_attention",
    "fused_epilogues",
    "fp32_main_grads",
    "overlap_grad_reduce",
    "overlap_param_gather",
)
"""Strategy fields whose default comes from the framework profile."""
FP32_BYTES = 4.0


class KernelPass(Spec):
    """One kernel: the values it reads plus writes per element of its operator, at the
    activation width (``act``, 2 bytes in bf16) and in fp32 (``fp32``). A ``cast`` kernel
    converts between the two and does not run when the activations are fp32 already."""

    kernel: str
    act: float = Field(default=0.0, ge=0)
    fp32: float = Field(default=0.0, ge=0)
    cast: bool = False


def _values(passes: tuple[KernelPass, ...], fp32_run: bool) -> tuple[float, float, int]:
    act = sum(p.act for p in passes if not (fp32_run and p.cast))
    f32 = sum(p.fp32 for p in passes if not (fp32_run and p.cast))
    return act, f32, sum(1 for p in passes if not (fp32_run and p.cast))


class OperatorImpl(Spec):
    """How a framework runs one element-wise operator of a layer.

    ``forward`` and ``backward`` list its kernels (:class:`KernelPass`) per element of the
    operator's width (the hidden size for a norm or a residual add, the MLP width for an
    activation, the query and key width for a rotary embedding); ``saved_act`` and
    ``saved_fp32`` are the values per element it keeps for backward at the activation width
    and in fp32, ``saved_mask`` the bytes of a dropout mask. The weight gradient of a norm
    is part of ``backward``. ``source`` cites the framework code the numbers are read from.
    """

    forward: tuple[KernelPass, ...]
    backward: tuple[KernelPass, ...]
    saved_act: float = Field(default=0.0, ge=0)
    saved_fp32: float = Field(default=0.0, ge=0)
    saved_mask: float = Field(default=0.0, ge=0)
    instances: int = Field(default=1, ge=1)
    source: str

    def forward_values(self, fp32_run: bool = False) -> tuple[float, float, int]:
        """``(act values, fp32 values, kernels)`` of the forward pass; the kernels are
        launched once per instance (a rotary embedding runs on q and on k)."""
        act, f32, kernels = _values(self.forward, fp32_run)
        return act, f32, kernels * self.instances

    def backward_values(self, fp32_run: bool = False) -> tuple[float, float, int]:
        """``(act values, fp32 values, kernels)`` of the backward pass."""
        act, f32, kernels = _values(self.backward, fp32_run)
        return act, f32, kernels * self.instances


class LossImpl(Spec):
    """The cross-entropy over the logits: kernels per logit (forward, backward), the values
    per logit it keeps for backward, and the logit copies the framework keeps alive until
    the backward pass (Hugging Face returns the fp32 logits in the model output)."""

    forward: tuple[KernelPass, ...]
    backward: tuple[KernelPass, ...]
    saved_act: float = Field(default=0.0, ge=0)
    saved_fp32: float = Field(default=0.0, ge=0)
    source: str

    def forward_values(self, fp32_run: bool = False) -> tuple[float, float, int]:
        return _values(self.forward, fp32_run)

    def backward_values(self, fp32_run: bool = False) -> tuple[float, float, int]:
        return _values(self.backward, fp32_run)


class Supports(Spec):
    """The parallel layouts a framework runs. ``zero`` lists the sharding levels it
    implements (0 plain data parallelism, 1-2 sharded optimizer and gradients, 3 fully
    sharded parameters); ``source`` says where the limits come from."""

    tp: bool = True
    pp: bool = True
    vpp: bool = True
    cp: bool = True
    ep: bool = True
    sequence_parallel: bool = True
    zero: tuple[int, ...] = (0, 1, 2, 3)
    zero_with_pp: tuple[int, ...] = (0, 1, 2, 3)
    source: str = ""


class FrameworkProfile(Spec):
    """One framework's implementation profile (see the module docstring)."""

    name: str
    description: str
    version: str = ""
    defaults: dict[str, bool] = Field(default_factory=dict)
    norm: OperatorImpl | None = None
    mlp_norm: OperatorImpl | None = None
    residual: OperatorImpl | None = None
    swiglu: OperatorImpl | None = None
    gelu: OperatorImpl | None = None
    rope: OperatorImpl | None = None
    loss: LossImpl | None = None
    supports: Supports = Supports()
    sources: Sources

    @property
    def pre_mlp_norm(self) -> OperatorImpl | None:
        """The pre-MLP norm's implementation: ``mlp_norm``, else ``norm``."""
        return self.mlp_norm or self.norm

    def default(self, switch: str) -> bool | None:
        """The profile's default of strategy field ``switch``, ``None`` if it sets none."""
        return self.defaults.get(switch)


@cache
def _files() -> dict[str, str]:
    folder = resources.files("deepflow.specs").joinpath("data", "frameworks")
    out = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            out[entry.name[: -len(".yaml")]] = entry.read_text("utf-8")
    return dict(sorted(out.items()))


def framework_names() -> list[str]:
    """Names of the shipped framework profiles."""
    return list(_files())


FRAMEWORKS: tuple[str, ...] = tuple(framework_names())
"""Profile names; a strategy batch stores a framework as its index here."""


def check_framework_name(name: str, path: str = "strategy.framework") -> str:
    """``name`` if a profile of that name ships, else a :class:`ConfigError` at ``path``
    with the closest name and the list of known ones."""
    known = framework_names()
    if name in known:
        return name
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown framework {name!r}; {hint}known: {', '.join(known)}", path)


@cache
def framework_profile(name: str = DEFAULT_FRAMEWORK) -> FrameworkProfile:
    """The profile called ``name`` (``specs/data/frameworks/<name>.yaml``)."""
    check_framework_name(name)
    data = yaml.safe_load(_files()[name]) or {}
    if not isinstance(data, dict):
        raise ConfigError("a framework profile must be a mapping", f"frameworks/{name}.yaml")
    if data.get("name") != name:
        raise ConfigError(
            f"must be {name!r} (the file name), got {data.get('name')!r}",
            f"frameworks/{name}.yaml: name",
        )
    unknown = set(data.get("defaults", {})) - set(SWITCHES)
    if unknown:
        raise ConfigError(
            f"{sorted(unknown)[0]!r} is not a switch a profile sets; switches: "
            f"{', '.join(SWITCHES)}",
            f"frameworks/{name}.yaml: defaults",
        )
    return FrameworkProfile.model_validate(data)
