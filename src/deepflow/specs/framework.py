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
* the fused attention kernel of its flash path (``attention_kernel``): ``default``, the
  chip's attention curve (on Hopper the cuDNN kernel today's PyTorch dispatches to), or
  ``flash-attention-2`` (Dao 2023), the kernel of the ``scaled_dot_product_attention``
  flash backend of the PyTorch a data set ran, at the chip's FlashAttention-2 curve
  (:func:`deepflow.hardware.kernels.attention_time`);
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
from typing import Literal

import yaml
from pydantic import Field

from deepflow.errors import ConfigError
from deepflow.specs.base import Sources, Spec

__all__ = [
    "DEFAULT_FRAMEWORK",
    "FRAMEWORKS",
    "SWITCHES",
    "FamilyImpl",
    "FrameworkProfile",
    "KernelPass",
    "LossImpl",
    "MicrobatchLoop",
    "OperatorImpl",
    "StepImpl",
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
    per logit it keeps for backward (``saved_act``, ``saved_fp32``) and ``transient_fp32``,
    the fp32 values per logit that exist besides the saved ones at the loss's memory peak,
    the start of its backward pass (PyTorch's ``cross_entropy``: the gradient
    ``nll_loss_backward`` writes and the one ``_log_softmax_backward_data`` writes from it,
    ``tools/autograd/derivatives.yaml``); a fused cross-entropy that writes its gradient
    over its saved softmax has none."""

    forward: tuple[KernelPass, ...]
    backward: tuple[KernelPass, ...]
    saved_act: float = Field(default=0.0, ge=0)
    saved_fp32: float = Field(default=0.0, ge=0)
    transient_fp32: float = Field(default=0.0, ge=0)
    source: str

    def forward_values(self, fp32_run: bool = False) -> tuple[float, float, int]:
        return _values(self.forward, fp32_run)

    def backward_values(self, fp32_run: bool = False) -> tuple[float, float, int]:
        return _values(self.backward, fp32_run)


class FamilyImpl(Spec):
    """Element-wise operators of one model family where the framework's code differs from
    its default: a framework that implements each architecture in its own file (Hugging
    Face ``transformers``: ``modeling_llama.py``, ``modeling_gpt2.py``) runs a GPT-style
    layer (LayerNorm, biased linear layers, GELU, learned positions) with other kernels
    than a Llama-style one. Each field replaces the profile's field of the same name;
    ``qkv_split`` is the work between a fused QKV projection's output and the attention
    kernel, per element of the key and value width (copies the attention kernel makes of
    strided key and value slices), absent where the attention kernel reads them in place."""

    norm: OperatorImpl | None = None
    mlp_norm: OperatorImpl | None = None
    residual: OperatorImpl | None = None
    qkv_split: OperatorImpl | None = None
    separate_projections: bool | None = None
    source: str


class StepImpl(Spec):
    """What a framework does per optimizer step outside the layers, each with its source.

    * ``optimizer_traffic``: bytes per parameter the gradient clipping and the optimizer
      update read and write (None: deepflow's mixed-precision default, 60 bytes with
      16-bit weights, 40 in fp32, :data:`deepflow.estimate.evaluate.OPTIMIZER_TRAFFIC_BYTES`);
    * ``autocast_weights``: the parameters are fp32 and ``torch.autocast`` casts each
      linear layer's weight to 16 bits in every forward pass (read 4, write 2 bytes per
      parameter) and its 16-bit gradient back to fp32 in backward (read 2, write 4), which
      ``AccumulateGrad`` then takes without a copy (``grad`` was None); this replaces the
      accumulation into main-gradient buffers;
    * ``gradients_in_backward``: gradients do not exist before the backward pass
      (``zero_grad(set_to_none=True)``): they are allocated while the saved activations
      and 16-bit weight copies are freed, so the memory peak is the larger of (weights +
      activations) and gradients over the resident optimizer state, not their sum.
    """

    optimizer_traffic: float | None = Field(default=None, gt=0)
    autocast_weights: bool = False
    gradients_in_backward: bool = False
    source: str


class MicrobatchLoop(Spec):
    """What the training loop does on the host around each micro-batch, outside the model,
    in the schedule without pipeline parallelism (``pp`` 1; the pipelined schedules'
    loops, whose synchronizations interleave with the stages' sends and receives, are not
    described).

    * ``device_syncs``: ``torch.cuda.synchronize()`` calls per micro-batch. After each the
      device queue is empty, so the next kernel starts only once the host has issued it:
      one host issue time (``efficiency.host_overhead``) of idle device per sync;
    * ``host_kernels``: kernels the host issues between a sync and the first layer (the
      data batch, its masks and position ids). They are tiny and the queue is empty, so
      each costs its host issue time on the critical path;
    * ``loss_allreduce``: the loss is averaged over the data-parallel group per micro-batch
      for logging, a blocking all-reduce of one fp32 value that the compute stream waits on.
    """

    device_syncs: int = Field(default=0, ge=0)
    host_kernels: int = Field(default=0, ge=0)
    loss_allreduce: bool = False
    source: str


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
    attention_kernel: Literal["default", "flash-attention-2"] = "default"
    attention_kernel_source: str = ""
    separate_projections: bool = False
    separate_projections_source: str = ""
    norm: OperatorImpl | None = None
    mlp_norm: OperatorImpl | None = None
    residual: OperatorImpl | None = None
    swiglu: OperatorImpl | None = None
    gelu: OperatorImpl | None = None
    rope: OperatorImpl | None = None
    loss: LossImpl | None = None
    gpt: FamilyImpl | None = None
    step: StepImpl | None = None
    microbatch: MicrobatchLoop | None = None
    supports: Supports = Supports()
    sources: Sources

    @property
    def pre_mlp_norm(self) -> OperatorImpl | None:
        """The pre-MLP norm's implementation: ``mlp_norm``, else ``norm``."""
        return self.mlp_norm or self.norm

    def family(self, gpt: bool) -> dict[str, OperatorImpl | None]:
        """The element-wise implementations for a Llama-style (``gpt=False``) or a
        GPT-style layer: the profile's fields, with those of ``gpt`` (:class:`FamilyImpl`)
        in their place for a GPT-style layer where the profile has that section."""
        out = {
            "norm": self.norm,
            "mlp_norm": self.pre_mlp_norm,
            "residual": self.residual,
            "qkv_split": None,
        }
        if gpt and self.gpt is not None:
            over = self.gpt
            out["norm"] = over.norm or out["norm"]
            out["mlp_norm"] = over.mlp_norm or over.norm or out["mlp_norm"]
            out["residual"] = over.residual or out["residual"]
            out["qkv_split"] = over.qkv_split
        return out

    def projections_separate(self, gpt: bool) -> bool:
        """Whether the layer's QKV projection runs as separate q, k, v linear layers and a
        gated MLP's up projection as separate gate and up layers (``separate_projections``;
        for a GPT-style layer the ``gpt`` section's value where it sets one)."""
        if gpt and self.gpt is not None and self.gpt.separate_projections is not None:
            return self.gpt.separate_projections
        return self.separate_projections

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
