"""The strategy space of a transformer scenario, as data.

A :class:`SearchSpace` describes which strategies a search may return: the scenario (model,
system, global batch), a *base* strategy that supplies every knob the search does not vary
(precision, flash attention, communication overlap, axis order, collective algorithm), and
user :class:`Restriction` s on any knob (``--fix tp=8``, ``--fix pp=2..16``,
``--fix recompute=selective,full``). It is enumerated, deterministically, into columns of
NumPy arrays and cut into :class:`Chunk` s that become
:class:`~deepflow.parallel.batch.StrategyBatch` es for the vectorized evaluator.

The searched knobs are :data:`SEARCH_KNOBS`. Their candidate values follow from the model
and the system; cheap divisibility rules are applied while enumerating (they would only
fill the result with points the evaluator rejects at once), everything else (memory, the
interleaved schedule's micro-batch count, unsupported precision) is left to the evaluator,
which names the rule each point breaks:

============================  ================================================================
knob                          candidates (before the user's restriction)
============================  ================================================================
``tp``                        divisors of the accelerator count that divide the attention
                              heads (and divide, or are multiples of, the key/value heads,
                              without MLA)
``cp``                        divisors of ``N / tp`` with ``seq_len`` divisible by ``2 cp``
                              (load-balanced ring attention, 2 cp chunks)
``pp``                        divisors of ``N / (tp cp)`` up to ``num_layers + 2``; the
                              layers are placed by the default pipeline split
                              (:mod:`deepflow.parallel.pipeline_split`), so ``pp`` need
                              not divide ``num_layers``
``dp``                        ``N / (tp cp pp)``: it fills the cluster; it must divide the
                              global batch
``vpp``                       divisors of ``ceil(num_layers / pp)`` (the layers of the
                              fullest stage) with ``pp vpp <= num_layers + 2``
``ep``                        1 for dense models; for mixture-of-experts models, divisors
                              of ``num_experts`` that fold with ``expert_tp`` onto the
                              ``tp cp dp`` ranks (``ep expert_tp`` divides ``tp cp dp``;
                              MoE parallel folding, :mod:`deepflow.parallel.experts`)
``expert_tp``                 ``tp`` for dense models; 1 and ``tp`` (where it divides the
                              expert hidden size) for mixture-of-experts models: the two
                              grids Megatron-Core's MoE recipes use (experts folded
                              without tensor parallelism, or split like the dense layers);
                              other values with ``--fix expert_tp=...``; an ``expert_tp``
                              other than ``tp`` only with sequence parallelism (rule
                              ``etp-sp``: the rest is not enumerated)
``micro_batch_size``          divisors of ``global_batch_size / dp``
``sequence_parallel``         both
``zero``                      0, 1, 2, 3
``recompute``                 none, selective, full
``recompute_modules``         with selective: Megatron-Core's default ``[core_attn]``; with the
                              ``recompute_policies`` option, each set of
                              :data:`RECOMPUTE_MODULE_CHOICES` whose modules the model has
``recompute_layers``          with full: every layer; with ``recompute_policies``, also
                              :data:`RECOMPUTE_LAYER_FRACTIONS` of a pipeline chunk's layers
``pipeline_schedule``         gpipe, 1f1b, interleaved, zero-bubble
``fp8_recipe``                under ``precision: fp8``: tensorwise, delayed, blockwise, and
                              mxfp8 where the accelerator has microscaling tensor cores;
                              none at other precisions
============================  ================================================================

The recompute policies multiply the space by up to ``len(RECOMPUTE_MODULE_CHOICES) +
len(RECOMPUTE_LAYER_FRACTIONS)``, so they are off unless the space asks for them
(``SearchSpace.recompute_policies``, ``deepflow search --recompute-policies``) or a
``--fix`` restricts them.

Settings that cannot change the result are enumerated once (a class of equal strategies is
represented by its first allowed member): without tensor parallelism, sequence parallelism
is off (Megatron-LM turns it off when ``tp == 1``, ``megatron/training/arguments.py``);
without pipeline parallelism ``vpp`` is its smallest allowed value and 1F1B, interleaved 1F1B
and ZB-H1 coincide; with ``vpp == 1`` interleaved 1F1B is 1F1B; with ``vpp > 1`` 1F1B *is*
interleaved and ZB-H1 is undefined (Qi et al. 2023 define it for one chunk per stage).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any

import numpy as np
from pydantic import ValidationError

from deepflow.errors import ConfigError
from deepflow.parallel.batch import DEFAULT_MODULES_MASK, RECOMPUTES, SCHEDULES, StrategyBatch
from deepflow.specs.accelerator import Precision
from deepflow.specs.fp8 import FP8_RECIPES, RECIPES
from deepflow.specs.model import ModelSpec
from deepflow.specs.scenario import Scenario
from deepflow.specs.strategy import (
    DEFAULT_RECOMPUTE_MODULES,
    PipelineSchedule,
    Recompute,
    RecomputeModule,
    StrategySpec,
)
from deepflow.specs.system import SystemSpec
from deepflow.workload.recompute import mask_modules, module_mask
from deepflow.workload.transformer import layer_template

SEARCH_KNOBS = (
    "dp",
    "tp",
    "pp",
    "vpp",
    "cp",
    "ep",
    "expert_tp",
    "sequence_parallel",
    "zero",
    "recompute",
    "recompute_modules",
    "recompute_layers",
    "micro_batch_size",
    "pipeline_schedule",
    "fp8_recipe",
)
"""The knobs a search varies; every other strategy field comes from the base strategy."""

_M = RecomputeModule
RECOMPUTE_MODULE_CHOICES: tuple[tuple[RecomputeModule, ...], ...] = (
    (_M.CORE_ATTN,),
    (_M.LAYERNORM,),
    (_M.CORE_ATTN, _M.LAYERNORM),
    (_M.CORE_ATTN, _M.MLP),
    (_M.LAYERNORM, _M.MLP),
    (_M.CORE_ATTN, _M.LAYERNORM, _M.MLP),
    (_M.MOE_ACT,),
    (_M.LAYERNORM, _M.MOE_ACT),
    (_M.LAYERNORM, _M.MOE),
    (_M.SHARED_EXPERTS,),
    (_M.MLA_UP_PROJ,),
    (_M.LAYERNORM, _M.MLA_UP_PROJ),
)
"""Module sets a search with recompute policies tries under ``recompute: selective``: the
default and the combinations Megatron-Core's recipes use (NeMo/Megatron-Bridge performance
configurations set e.g. ``[core_attn]``, ``[mla_up_proj, moe_act]``, ``[layernorm, moe]``),
each kept where the model has all of its modules."""

RECOMPUTE_LAYER_FRACTIONS = (0.25, 0.5, 0.75)
"""With ``recompute: full`` and recompute policies, also recompute only this fraction of a
pipeline chunk's layers (rounded, kept when strictly between none and all)."""

INTEGER_KNOBS = (
    "dp",
    "tp",
    "pp",
    "vpp",
    "cp",
    "ep",
    "expert_tp",
    "zero",
    "micro_batch_size",
    "recompute_layers",
)
# the recompute mode a knob's value is checked under
_NEEDS = {"recompute_modules": "selective", "recompute_layers": "full"}
_NEEDS_PRECISION = {"fp8_recipe": "fp8", "fp8_param_gather": "fp8"}
COLUMNS = (
    "pp",
    "vpp",
    "tp",
    "cp",
    "dp",
    "ep",
    "expert_tp",
    "micro_batch_size",
    "sequence_parallel",
    "zero",
    "recompute",
    "recompute_modules",
    "recompute_layers",
    "pipeline_schedule",
    "fp8_recipe",
)
"""The columns of an enumerated space, in the order of :meth:`SearchSpace.row_table`."""
_NOT_BATCHED = ("axis_order", "stage_layers")
"""Base fields that are not arrays of a batch: the axis order is passed on its own, and an
explicit pipeline split belongs to one ``pp``, so a search uses the default split."""
FIXABLE = tuple(k for k in StrategySpec.model_fields if k != "stage_layers")
"""Every strategy field but the explicit pipeline split can be restricted (searched knobs)
or pinned (the others)."""

_ONE_F_ONE_B = SCHEDULES.index(PipelineSchedule.ONE_F_ONE_B)
_INTERLEAVED = SCHEDULES.index(PipelineSchedule.INTERLEAVED)
_ZERO_BUBBLE = SCHEDULES.index(PipelineSchedule.ZERO_BUBBLE)
_GPIPE = SCHEDULES.index(PipelineSchedule.GPIPE)
# Classes of schedules that give the same step (estimate/pipeline.py): each tuple lists a
# class in order of preference; the first allowed member represents it.
_SCHEDULE_CLASSES = {
    "no-pipeline": ((_GPIPE,), (_ONE_F_ONE_B, _INTERLEAVED, _ZERO_BUBBLE)),
    "one-chunk": ((_GPIPE,), (_ONE_F_ONE_B, _INTERLEAVED), (_ZERO_BUBBLE,)),
    "chunks": ((_GPIPE,), (_INTERLEAVED, _ONE_F_ONE_B)),
}


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n``, ascending."""
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted({*small, *(n // d for d in small)})


@dataclass(frozen=True)
class Restriction:
    """The values a knob may take: an explicit set (``values``) and/or inclusive integer
    bounds (``low``, ``high``). ``Restriction()`` admits everything."""

    values: tuple[Any, ...] | None = None
    low: int | None = None
    high: int | None = None

    def admits(self, value: Any) -> bool:
        if self.values is not None and value not in self.values:
            return False
        if self.low is not None and value < self.low:
            return False
        return not (self.high is not None and value > self.high)

    def filter(self, candidates: Iterable[Any]) -> list[Any]:
        return [c for c in candidates if self.admits(c)]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (used in fingerprints and reports)."""
        out: dict[str, Any] = {}
        if self.values is not None:
            out["values"] = [v.value if isinstance(v, Enum) else v for v in self.values]
        if self.low is not None:
            out["low"] = self.low
        if self.high is not None:
            out["high"] = self.high
        return out


def _field_type_error(key: str, text: str, reason: str) -> ConfigError:
    return ConfigError(f"{reason} (got {text!r})", f"--fix {key}")


def _parse_value(key: str, text: str) -> Any:
    """One value of strategy field ``key`` from its command-line text, validated by the
    field's own type (so ``zero=5`` fails with the spec's message, and booleans take
    ``true``/``false``, ``yes``/``no``, ``on``/``off``, ``1``/``0``)."""
    text = text.strip()
    if key == "axis_order":
        value: Any = tuple(p.strip() for p in text.split("/") if p.strip())
    elif key == "recompute_modules":
        value = [p.strip() for p in text.split("+") if p.strip()]
    elif key in INTEGER_KNOBS:
        try:
            value = int(text)
        except ValueError:
            raise _field_type_error(key, text, "expected an integer") from None
    else:
        value = text
    try:
        extra = {"recompute": _NEEDS[key]} if key in _NEEDS else {}
        if key in _NEEDS_PRECISION:
            extra = {"precision": _NEEDS_PRECISION[key]}
        checked = StrategySpec.model_validate({"dp": 1, **extra, key: value})
    except ValidationError as exc:
        message = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise _field_type_error(key, text, message) from None
    return getattr(checked, key)


def parse_fix(text: str) -> tuple[str, Restriction]:
    """Parse one ``--fix`` argument: ``KEY=VALUE``, ``KEY=V1,V2,...`` or, for integer knobs,
    ``KEY=LOW..HIGH`` (either bound may be left out: ``pp=..8``, ``tp=2..``).

    ``recompute_modules`` takes each set's modules joined by ``+``
    (``recompute_modules=core_attn,layernorm+mlp``).

    ``axis_order`` takes its axes separated by ``/`` (``axis_order=tp/cp/dp/pp``).
    Raises :class:`~deepflow.errors.ConfigError` naming the key on any bad input.
    """
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"expected KEY=VALUE, got {text!r}", "--fix")
    if key not in FIXABLE:
        import difflib

        close = difflib.get_close_matches(key, FIXABLE, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(FIXABLE)
        raise ConfigError(f"unknown strategy knob {key!r}{hint} (knobs: {known})", "--fix")
    rest = rest.strip()
    if not rest:
        raise ConfigError("missing value", f"--fix {key}")
    if ".." in rest:
        if key not in INTEGER_KNOBS:
            raise _field_type_error(key, rest, "ranges LOW..HIGH apply to integer knobs only")
        low_text, _, high_text = rest.partition("..")
        low = _parse_value(key, low_text) if low_text.strip() else None
        high = _parse_value(key, high_text) if high_text.strip() else None
        if low is not None and high is not None and low > high:
            raise _field_type_error(key, rest, "empty range")
        return key, Restriction(low=low, high=high)
    if key == "axis_order":
        return key, Restriction(values=(_parse_value(key, rest),))
    values = tuple(dict.fromkeys(_parse_value(key, part) for part in rest.split(",")))
    return key, Restriction(values=values)


def parse_fixes(texts: Iterable[str]) -> dict[str, Restriction]:
    """Parse several ``--fix`` arguments; a knob given twice must satisfy both."""
    out: dict[str, Restriction] = {}
    for text in texts:
        key, restriction = parse_fix(text)
        if key in out:
            restriction = _intersect(out[key], restriction)
        out[key] = restriction
    return out


def _intersect(a: Restriction, b: Restriction) -> Restriction:
    values = a.values
    if b.values is not None:
        values = b.values if values is None else tuple(v for v in values if v in b.values)
    lows = [x for x in (a.low, b.low) if x is not None]
    highs = [x for x in (a.high, b.high) if x is not None]
    bounds = Restriction(low=max(lows) if lows else None, high=min(highs) if highs else None)
    if values is not None:
        values = tuple(v for v in values if bounds.admits(v))
    return Restriction(values, bounds.low, bounds.high)


@dataclass(frozen=True)
class Chunk:
    """Points ``start .. start + len(columns[...]) - 1`` of space ``space`` (its position in a
    sweep), in enumeration order; ``index`` counts chunks within that space. With ``keys``
    the points are scattered: point ``i`` is at position ``keys[i]``."""

    space: int
    index: int
    start: int
    columns: dict[str, np.ndarray] = field(repr=False)
    keys: np.ndarray | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.columns["dp"].shape[0])

    def positions(self, i: np.ndarray) -> np.ndarray:
        """Positions in the space's enumeration of the chunk's points ``i``: ``start + i``,
        or ``keys[i]`` for a chunk of scattered points (the pruned search's batches)."""
        return self.start + i if self.keys is None else self.keys[i]


@dataclass(frozen=True)
class RowAxes:
    """The candidate values of the knobs on one dense mesh ``(pp, vpp, tp, cp, dp)``:
    ``experts`` rows ``(ep, expert_tp)``, ``policies`` rows ``(recompute code, module
    mask, recompute_layers)``, schedules and FP8 recipes as codes. The mesh's points are
    their product in this order (the FP8 recipe varies fastest) over the *blocks*
    ``(experts, micro_batch_size, sequence_parallel)`` that :meth:`kept_blocks` keeps."""

    mesh: tuple[int, int, int, int, int]
    experts: np.ndarray
    micro_batch_sizes: np.ndarray
    sequence_parallel: np.ndarray
    zeros: np.ndarray
    policies: np.ndarray
    schedules: np.ndarray
    fp8_recipes: np.ndarray

    def blocks(self) -> np.ndarray:
        """Every block as a row ``(ep, expert_tp, micro_batch_size, sequence_parallel)``,
        in enumeration order (before :meth:`kept_blocks`)."""
        e, mb, sp = np.meshgrid(
            np.arange(len(self.experts)),
            self.micro_batch_sizes,
            self.sequence_parallel,
            indexing="ij",
        )
        grid = self.experts[e.ravel()]
        return np.stack([grid[:, 0], grid[:, 1], mb.ravel(), sp.ravel()], axis=1)

    def kept_blocks(self) -> np.ndarray:
        """The enumerated blocks: with ``tp > 1`` an ``expert_tp`` other than ``tp`` only
        with sequence parallelism (rule ``etp-sp``)."""
        b = self.blocks()
        if self.mesh[2] > 1:
            b = b[(b[:, 1] == self.mesh[2]) | (b[:, 3] == 1)]
        return b

    @property
    def inner_size(self) -> int:
        """Points per block: ZeRO stages x recompute settings x schedules x FP8 recipes."""
        return len(self.zeros) * len(self.policies) * len(self.schedules) * len(self.fp8_recipes)


@dataclass(frozen=True)
class SearchSpace:
    """Every strategy a search may visit for one model, system and global batch.

    ``base`` supplies the knobs outside :data:`SEARCH_KNOBS`; ``restrictions`` narrow any
    knob (searched knobs are filtered, the others must be pinned to one value, which then
    replaces the base value). Build one with :meth:`from_scenario`.
    """

    model: ModelSpec
    system: SystemSpec
    global_batch_size: int
    base: StrategySpec
    restrictions: Mapping[str, Restriction] = field(default_factory=dict)
    recompute_policies: bool = False

    @classmethod
    def from_scenario(
        cls,
        scenario: Scenario,
        fixes: Iterable[str] | Mapping[str, Restriction] = (),
        num_accelerators: int | None = None,
        recompute_policies: bool = False,
    ) -> SearchSpace:
        """The space of ``scenario`` (its strategy is the base), restricted by ``fixes``
        (``--fix`` strings or parsed restrictions), optionally on ``num_accelerators``
        accelerators instead of the scenario's; ``recompute_policies`` adds the recompute
        module sets and partial full recomputation to the searched recompute settings."""
        restrictions = dict(fixes) if isinstance(fixes, Mapping) else parse_fixes(fixes)
        pinned: dict[str, Any] = {}
        for key, restriction in restrictions.items():
            if key in SEARCH_KNOBS:
                continue
            if restriction.values is None or len(restriction.values) != 1:
                raise ConfigError(
                    f"{key} is not searched; pin it to one value ({key}=VALUE)", f"--fix {key}"
                )
            pinned[key] = restriction.values[0]
        # the search varies pp, so it places layers by the default split, not the base's
        base = scenario.strategy.replace(stage_layers=None, **pinned)
        system = scenario.system
        if num_accelerators is not None and num_accelerators != system.num_accelerators:
            if num_accelerators < 1:
                raise ConfigError(f"must be positive (got {num_accelerators})", "--gpus")
            system = system.replace(num_accelerators=num_accelerators)  # type: ignore[assignment]
        searched = {k: r for k, r in restrictions.items() if k in SEARCH_KNOBS}
        return cls(
            model=scenario.model,
            system=system,
            global_batch_size=scenario.training.global_batch_size,
            base=base,  # type: ignore[arg-type]
            restrictions=searched,
            recompute_policies=recompute_policies,
        )

    def without_cache(self) -> SearchSpace:
        """The same space without its enumerated columns (cheap to send to a worker)."""
        return SearchSpace(
            self.model,
            self.system,
            self.global_batch_size,
            self.base,
            dict(self.restrictions),
            self.recompute_policies,
        )

    def _allowed(self, knob: str, candidates: Iterable[Any]) -> list[Any]:
        restriction = self.restrictions.get(knob)
        return list(candidates) if restriction is None else restriction.filter(candidates)

    def _representatives(self, knob: str, classes: Sequence[Sequence[Any]]) -> list[Any]:
        """One allowed member (the first) of each class of equivalent values."""
        out = []
        for members in classes:
            allowed = self._allowed(knob, members)
            if allowed:
                out.append(allowed[0])
        return out

    def _expert_grids(self, tp: int, cp: int, dp: int) -> list[tuple[int, int]]:
        """The ``(ep, expert_tp)`` pairs of a dense mesh: ``(1, tp)`` for a dense model;
        for a mixture-of-experts model ``expert_tp`` 1 or ``tp`` (any divisor of ``tp``
        that a ``--fix`` admits) dividing the expert hidden size, with each allowed ``ep`` dividing ``num_experts`` such that
        ``ep * expert_tp`` divides ``tp * cp * dp`` (Megatron-Core's expert grid)."""
        m = self.model
        if m.moe is None:
            return [
                (e, t) for e in self._allowed("ep", [1]) for t in self._allowed("expert_tp", [tp])
            ]
        ffn = m.moe.expert_ffn_hidden_size or m.ffn_hidden_size
        ranks = tp * cp * dp
        out = []
        restriction = self.restrictions.get("expert_tp")
        candidates = divisors(tp) if restriction is not None else sorted({1, tp})
        for etp in self._allowed("expert_tp", [t for t in candidates if ffn % t == 0]):
            eps = [e for e in divisors(ranks // etp) if m.moe.num_experts % e == 0]
            out += [(e, etp) for e in self._allowed("ep", eps)]
        return out

    def _schedules(self, pp: int, vpp: int) -> list[int]:
        restriction = self.restrictions.get("pipeline_schedule")
        allowed = [
            i for i, s in enumerate(SCHEDULES) if restriction is None or restriction.admits(s)
        ]
        kind = "no-pipeline" if pp == 1 else ("one-chunk" if vpp == 1 else "chunks")
        reps = []
        for members in _SCHEDULE_CLASSES[kind]:
            present = [m for m in members if m in allowed]
            if present:
                reps.append(present[0])
        return sorted(reps)

    @cached_property
    def _module_sets(self) -> list[int]:
        """Module sets tried under selective recomputation, as bitmasks: a restriction's
        sets; with recompute policies, each of :data:`RECOMPUTE_MODULE_CHOICES` whose
        modules the model has; otherwise the base strategy's set (by default Megatron-Core's
        ``[core_attn]``)."""
        restriction = self.restrictions.get("recompute_modules")
        if restriction is not None and restriction.values is not None:
            sets: Iterable[tuple[RecomputeModule, ...]] = restriction.values
        elif self.recompute_policies:
            layers = [layer_template(self.model, False)]
            if self.model.moe is not None:
                layers.append(layer_template(self.model, True))
            present = {RecomputeModule.CORE_ATTN} | {
                m for layer in layers for op in layer.ops for m in op.modules
            }
            sets = [c for c in RECOMPUTE_MODULE_CHOICES if set(c) <= present]
        elif self.base.recompute is Recompute.SELECTIVE:
            sets = [self.base.effective_recompute_modules]
        else:
            sets = [DEFAULT_RECOMPUTE_MODULES]
        return list(dict.fromkeys(module_mask(modules) for modules in sets))

    @cached_property
    def _fp8_recipes(self) -> list[int]:
        """Codes (into :data:`~deepflow.specs.fp8.FP8_RECIPES`) of the FP8 recipes tried:
        under ``precision: fp8``, every recipe the accelerator runs (MXFP8 needs
        microscaling tensor cores), or the restriction's; ``[-1]`` (none) otherwise."""
        if self.base.precision is not Precision.FP8:
            return [-1]
        mx = self.system.accelerator.microscaling
        runs = [r for r in FP8_RECIPES if mx or not RECIPES[r].needs_microscaling]
        return [FP8_RECIPES.index(r) for r in self._allowed("fp8_recipe", runs)]

    def _recompute_policies(self, per_chunk: int) -> list[tuple[int, int, int]]:
        """``(recompute code, module mask, recompute_layers)`` of each recompute setting
        tried on a pipeline layout with ``per_chunk`` layers per chunk."""
        out = []
        for mode in self._allowed("recompute", RECOMPUTES):
            code = RECOMPUTES.index(mode)
            if mode is Recompute.SELECTIVE:
                out += [(code, mask, -1) for mask in self._module_sets]
            elif mode is Recompute.FULL:
                layers = [-1]
                if self.recompute_policies:
                    ks = [round(f * per_chunk) for f in RECOMPUTE_LAYER_FRACTIONS]
                    layers += sorted({k for k in ks if 0 < k < per_chunk})
                restriction = self.restrictions.get("recompute_layers")
                if restriction is not None:
                    layers = [k for k in layers if k >= 0 and restriction.admits(k)]
                    if restriction.values:
                        layers += [k for k in restriction.values if k not in layers]
                out += [(code, 0, k) for k in layers]
            else:
                out.append((code, 0, -1))
        return out

    @cached_property
    def rows(self) -> list[tuple[int, int, int, int, int]]:
        """The dense meshes ``(pp, vpp, tp, cp, dp)`` of the space, sorted: the points of
        each are one :meth:`row_table`, and :attr:`columns` is the row tables in this
        order."""
        m, n, gbs = self.model, self.system.num_accelerators, self.global_batch_size
        rows: list[tuple[int, int, int, int, int]] = []
        tps = [
            d
            for d in divisors(n)
            if m.num_attention_heads % d == 0
            and (m.mla is not None or m.num_kv_heads % d == 0 or d % m.num_kv_heads == 0)
        ]
        for tp in self._allowed("tp", tps):
            cps = [d for d in divisors(n // tp) if d == 1 or m.seq_len % (2 * d) == 0]
            for cp in self._allowed("cp", cps):
                # the default pipeline split gives every virtual stage a layer, the
                # embedding or the loss while pp * vpp <= num_layers + 2 (rule pp-layers)
                units = m.num_layers + 2
                pps = [d for d in divisors(n // (tp * cp)) if d <= units]
                for pp in self._allowed("pp", pps):
                    dp = n // (tp * cp * pp)
                    if gbs % dp or not self._allowed("dp", [dp]):
                        continue
                    vpp_all = [v for v in divisors(-(-m.num_layers // pp)) if pp * v <= units]
                    vpps = (
                        self._representatives("vpp", [vpp_all])
                        if pp == 1
                        else self._allowed("vpp", vpp_all)
                    )
                    for vpp in vpps:
                        rows.append((pp, vpp, tp, cp, dp))
        rows.sort()
        return rows

    def row_axes(self, pp: int, vpp: int, tp: int, cp: int, dp: int) -> RowAxes:
        """The candidate values of the other knobs on one dense mesh (a member of
        :attr:`rows`): the axes :meth:`row_table` takes the product of."""
        m, gbs = self.model, self.global_batch_size
        policies = np.array(
            self._recompute_policies(m.num_layers // (pp * vpp)), dtype=np.int64
        ).reshape(-1, 3)
        sps = (
            self._representatives("sequence_parallel", [(False, True)])
            if tp == 1
            else self._allowed("sequence_parallel", (False, True))
        )
        return RowAxes(
            mesh=(pp, vpp, tp, cp, dp),
            experts=np.array(self._expert_grids(tp, cp, dp), dtype=np.int64).reshape(-1, 2),
            micro_batch_sizes=np.array(
                self._allowed("micro_batch_size", divisors(gbs // dp)), dtype=np.int64
            ),
            sequence_parallel=np.array([int(s) for s in sps], dtype=np.int64),
            zeros=np.array(self._allowed("zero", (0, 1, 2, 3)), dtype=np.int64),
            policies=policies,
            schedules=np.array(self._schedules(pp, vpp), dtype=np.int64),
            fp8_recipes=np.array(self._fp8_recipes, dtype=np.int64),
        )

    def row_table(self, pp: int, vpp: int, tp: int, cp: int, dp: int) -> np.ndarray:
        """The points of one dense mesh (a member of :attr:`rows`) as an integer table,
        one column per name of :data:`COLUMNS`, in enumeration order: the product of the
        :meth:`row_axes` (experts, micro-batch size, sequence parallelism, ZeRO, recompute
        setting, schedule, FP8 recipe; the last varies fastest), less the blocks that
        :meth:`RowAxes.kept_blocks` drops."""
        axes = self.row_axes(pp, vpp, tp, cp, dp)
        grid = np.meshgrid(
            [pp],
            [vpp],
            [tp],
            [cp],
            [dp],
            np.arange(len(axes.experts)),
            axes.micro_batch_sizes,
            axes.sequence_parallel,
            axes.zeros,
            np.arange(len(axes.policies)),
            axes.schedules,
            axes.fp8_recipes,
            indexing="ij",
        )
        flat = [g.ravel() for g in grid]
        policy = axes.policies[flat[9]]
        flat[9:10] = [policy[:, 0], policy[:, 1], policy[:, 2]]
        grids = axes.experts[flat[5]]
        flat[5:6] = [grids[:, 0], grids[:, 1]]
        table = np.stack(flat, axis=1).astype(np.int64)
        if tp > 1:
            # a folded expert_tp needs sequence parallelism (rule etp-sp): the points
            # without it are never enumerated
            table = table[(table[:, 6] == tp) | (table[:, 8] == 1)]
        return table

    @staticmethod
    def table_columns(table: np.ndarray) -> dict[str, np.ndarray]:
        """Columns (as in :attr:`columns`) of a table of :meth:`row_table` rows."""
        out = {name: np.ascontiguousarray(table[:, i]) for i, name in enumerate(COLUMNS)}
        out["sequence_parallel"] = out["sequence_parallel"].astype(bool)
        return out

    @cached_property
    def columns(self) -> dict[str, np.ndarray]:
        """Every point of the space, one array per searched knob (enums as integer codes
        into ``RECOMPUTES`` and ``SCHEDULES``, recompute modules as bitmasks, ``-1`` for
        "every layer"), sorted by ``(pp, vpp, tp, cp, dp, ep, micro_batch_size,
        sequence_parallel, zero, recompute setting, pipeline_schedule)``: the
        :meth:`row_table` of each of :attr:`rows`, in order."""
        parts = [self.row_table(*row) for row in self.rows]
        table = np.concatenate(parts) if parts else np.zeros((0, len(COLUMNS)), dtype=np.int64)
        return self.table_columns(table.astype(np.int64))

    def __len__(self) -> int:
        return int(self.columns["dp"].shape[0])

    def chunks(self, size: int, space: int = 0) -> Iterator[Chunk]:
        """The points in chunks of ``size`` (the last may be shorter), in order."""
        assert size > 0
        cols = self.columns
        for index, start in enumerate(range(0, len(self), size)):
            yield Chunk(space, index, start, {k: v[start : start + size] for k, v in cols.items()})

    def num_chunks(self, size: int) -> int:
        return -(-len(self) // size)

    def batch(self, columns: Mapping[str, np.ndarray]) -> StrategyBatch:
        """The strategy batch of enumerated ``columns``: the searched knobs from the columns,
        every other knob from the base strategy."""
        b = self.base
        fixed = {
            name: getattr(b, name)
            for name in StrategySpec.model_fields
            if name not in (*SEARCH_KNOBS, *_NOT_BATCHED) and getattr(b, name) is not None
        }
        return StrategyBatch.from_arrays(axis_order=tuple(b.axis_order), **fixed, **columns)

    def describe(self) -> dict[str, Any]:
        """The space as JSON-ready data: what defines it, nothing enumerated."""
        extra = {"recompute_policies": True} if self.recompute_policies else {}
        return {
            **extra,
            "model": self.model.model_dump(mode="json"),
            "system": self.system.model_dump(mode="json"),
            "global_batch_size": self.global_batch_size,
            "base": self.base.model_dump(mode="json"),
            "restrictions": {k: self.restrictions[k].describe() for k in sorted(self.restrictions)},
        }

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`describe` (results files record it)."""
        text = json.dumps(self.describe(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def strategy_dict(base: StrategySpec, columns: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
    """Point ``i`` of enumerated ``columns`` in the scenario file's ``strategy`` format."""
    data = base.model_dump(mode="json")
    for knob in SEARCH_KNOBS:
        value = columns[knob][i]
        if knob == "recompute":
            data[knob] = RECOMPUTES[int(value)].value
        elif knob == "recompute_modules":
            mask = int(value)
            selective = RECOMPUTES[int(columns["recompute"][i])] is Recompute.SELECTIVE
            data[knob] = (
                [m.value for m in mask_modules(mask)]
                if selective and mask != DEFAULT_MODULES_MASK
                else None
            )
        elif knob == "recompute_layers":
            data[knob] = int(value) if int(value) >= 0 else None
        elif knob == "pipeline_schedule":
            data[knob] = SCHEDULES[int(value)].value
        elif knob == "sequence_parallel":
            data[knob] = bool(value)
        elif knob == "expert_tp":
            # the default (tp) is left unset, as the strategy spec writes it
            data[knob] = None if int(value) == int(columns["tp"][i]) else int(value)
        elif knob == "fp8_recipe":
            data[knob] = FP8_RECIPES[int(value)].value if int(value) >= 0 else None
        else:
            data[knob] = int(value)
    return data


__all__ = [
    "COLUMNS",
    "FIXABLE",
    "RECOMPUTE_LAYER_FRACTIONS",
    "RECOMPUTE_MODULE_CHOICES",
    "SEARCH_KNOBS",
    "Chunk",
    "Restriction",
    "RowAxes",
    "SearchSpace",
    "divisors",
    "parse_fix",
    "parse_fixes",
    "strategy_dict",
]
