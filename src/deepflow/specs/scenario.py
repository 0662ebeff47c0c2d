"""The scenario: one training job on one system (spec/scenario.md).

:func:`load_scenario` reads a YAML or JSON file; :func:`scenario_from_dict` builds one from
a mapping. Both resolve presets, convert units to SI, fill defaults and raise
:class:`~deepflow.errors.ConfigError` naming the key path on any malformed input.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, model_validator

from deepflow.errors import ConfigError
from deepflow.specs.accelerator import AcceleratorSpec
from deepflow.specs.base import Name, Spec
from deepflow.specs.files import brief, load_config_file
from deepflow.specs.fp8 import RECIPES
from deepflow.specs.hf import hf_model_section
from deepflow.specs.kernels import read_calibration
from deepflow.specs.model import ModelSpec
from deepflow.specs.presets import resolve_section
from deepflow.specs.strategy import (
    FOLD_RULE,
    RecomputeModule,
    StrategySpec,
    check_stage_layers,
    folds,
)
from deepflow.specs.system import SystemSpec
from deepflow.specs.training import TrainingSpec

SECTIONS = ("model", "system", "strategy", "training")


class Scenario(Spec):
    """A validated scenario. ``strategy.dp`` is always an integer here (``auto`` resolved
    to ``num_accelerators // (tp * pp * cp)``; whether it divides is a feasibility question,
    answered by the evaluators)."""

    name: Name = "scenario"
    model: ModelSpec
    system: SystemSpec
    strategy: StrategySpec
    training: TrainingSpec

    @model_validator(mode="after")
    def _resolve_dp(self) -> Scenario:
        explicit_mbs = "micro_batch_size" in self.strategy.model_fields_set
        if self.strategy.dp == "auto":
            dp = max(1, self.system.num_accelerators // self.strategy.model_parallel_size)
            object.__setattr__(self, "strategy", self.strategy.replace(dp=dp))
        shard = self.strategy.shard_degree
        if shard is not None:
            group = self.strategy.dp * self.strategy.cp  # type: ignore[operator]
            if self.strategy.zero == 0:
                raise ValueError(
                    f"strategy.shard_degree={shard} needs strategy.zero >= 1 "
                    "(with zero 0 no state is sharded)"
                )
            if group % shard:
                raise ValueError(
                    f"strategy.shard_degree={shard} does not divide the sharding group "
                    f"dp*cp={self.strategy.dp}*{self.strategy.cp}={group}"
                )
        vn = self.strategy.virtual_nodes
        if vn is not None:
            gbs = self.training.global_batch_size
            if gbs % vn:
                raise ValueError(
                    f"strategy.virtual_nodes={vn} does not divide training.global_batch_size={gbs}"
                )
            if explicit_mbs and self.strategy.micro_batch_size != gbs // vn:
                raise ValueError(
                    f"strategy.micro_batch_size={self.strategy.micro_batch_size} contradicts "
                    f"strategy.virtual_nodes={vn} (a virtual node holds {gbs // vn} sequences); "
                    "give one of them"
                )
            # the virtual node's batch is the micro-batch (VirtualFlow, sec. 3)
            strategy = self.strategy.replace(micro_batch_size=gbs // vn)
            object.__setattr__(self, "strategy", strategy)
        return self

    @model_validator(mode="after")
    def _expert_grid(self) -> Scenario:
        # an explicit expert_tp names an expert grid; Megatron-Core refuses one that does
        # not fold onto the dense ranks (parallel_state.initialize_model_parallel raises)
        s = self.strategy
        if s.expert_tp is None or s.expert_tp == s.tp:
            return self  # the default grid
        if self.model.moe is None:
            raise ConfigError(
                f"needs a mixture-of-experts model (model.moe is not set; got {s.expert_tp})",
                "strategy.expert_tp",
            )
        if not bool(folds(s.tp, s.cp, s.dp, s.ep, s.expert_tp)):
            raise ConfigError(
                f"{FOLD_RULE}; got ep*expert_tp={s.ep}*{s.expert_tp}, "
                f"tp*cp*dp={s.tp}*{s.cp}*{s.dp}",
                "strategy.expert_tp",
            )
        return self

    @model_validator(mode="after")
    def _recompute_modules_exist(self) -> Scenario:
        # Megatron-Core refuses mla_up_proj without multi-latent attention
        # (transformer_config.py, __post_init__)
        modules = self.strategy.recompute_modules or ()
        if RecomputeModule.MLA_UP_PROJ in modules and self.model.mla is None:
            raise ValueError(
                "strategy.recompute_modules: mla_up_proj needs a multi-latent-attention "
                "model (model.mla is not set)"
            )
        return self

    @model_validator(mode="after")
    def _fp8_recipe_on_chip(self) -> Scenario:
        # MXFP8 needs block-scaled tensor cores (TE: MXFP8BlockScaling is Blackwell-only)
        recipe = self.strategy.effective_fp8_recipe
        acc = self.system.accelerator
        if recipe is not None and RECIPES[recipe].needs_microscaling and not acc.microscaling:
            raise ConfigError(
                f"fp8_recipe={recipe.value} needs block-scaled (MX) tensor cores, which "
                f"{acc.name} lacks (accelerator microscaling: false); use tensorwise, "
                "delayed or blockwise",
                "strategy.fp8_recipe",
            )
        return self

    @model_validator(mode="after")
    def _stage_layers_sum(self) -> Scenario:
        s = self.strategy
        if s.stage_layers is not None:
            check_stage_layers(s.stage_layers, s.pp, s.vpp, self.model.num_layers)
        return self

    @property
    def dp(self) -> int:
        assert isinstance(self.strategy.dp, int)
        return self.strategy.dp


def _resolve_presets(data: dict[str, Any], base_dir: Path | None = None) -> dict[str, Any]:
    out = dict(data)
    if "model" in out:
        out["model"] = resolve_model(out["model"], "model", base_dir)
    if "system" in out:
        system = resolve_section("systems", out["system"], "system")
        if "accelerator" in system:
            system["accelerator"] = resolve_calibration(
                resolve_section("accelerators", system["accelerator"], "system.accelerator"),
                base_dir,
            )
        out["system"] = system
    return out


def resolve_model(section: object, path: str, base_dir: Path | None) -> dict[str, Any]:
    """A model section's fields: a preset, a mapping, or a mapping with ``hf_config: FILE``
    (a transformers config.json, relative to ``base_dir``, read by
    :func:`~deepflow.specs.hf.read_hf_config`) whose other keys override the file's."""
    if not (isinstance(section, dict) and "hf_config" in section):
        return resolve_section("models", section, path)
    section = dict(section)
    name = section.pop("hf_config")
    if "preset" in section:
        raise ConfigError("give either preset or hf_config, not both", f"{path}.hf_config")
    if not isinstance(name, (str, Path)) or not str(name):
        raise ConfigError(f"expected a file name (got {brief(name)})", f"{path}.hf_config")
    file = Path(name)
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    return hf_model_section(file, section)


def resolve_calibration(accelerator: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Replace an accelerator's ``calibration: FILE`` (relative to ``base_dir``, the
    scenario file's folder) by the checked file (:func:`read_calibration`)."""
    name = accelerator.get("calibration")
    if not isinstance(name, (str, Path)):
        return accelerator
    path = Path(name)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    names = accelerator.get("device_names") or ()
    if not isinstance(names, (list, tuple)):
        names = ()
    calibration = read_calibration(
        path, tuple(str(n) for n in names), str(accelerator.get("name", ""))
    )
    return {**accelerator, "calibration": calibration.model_dump()}


def _known_fields(model: type[Spec], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the spec class reached by following ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, Spec)):
            return []
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, Spec)), None)
    if isinstance(current, type) and issubclass(current, Spec):
        return list(current.model_fields)
    return []


def config_error_from(exc: ValidationError, root: type[Spec], prefix: str = "") -> ConfigError:
    """Translate the first pydantic error into a :class:`ConfigError` with a key path."""
    err = exc.errors()[0]
    raised = (err.get("ctx") or {}).get("error")
    if isinstance(raised, ConfigError) and raised.path:
        # a validator that raised a ConfigError already named the key path and the value
        return ConfigError(raised.message, raised.path)
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    path = ".".join(str(p) for p in loc)
    if prefix:
        path = f"{prefix}.{path}" if path else prefix
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_fields(root, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ConfigError(f"unknown key{hint}", path)
    if kind == "missing":
        return ConfigError("missing required key", path)
    message = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if kind not in ("model_type",) and not isinstance(value, dict):
        message = f"{message} (got {brief(value)})"
    return ConfigError(message, path)


def scenario_from_dict(
    data: object, name: str = "scenario", base_dir: Path | None = None
) -> Scenario:
    """Build a :class:`Scenario` from a mapping with the sections of spec/scenario.md."""
    if not isinstance(data, dict):
        raise ConfigError(f"a scenario must be a mapping with keys {', '.join(SECTIONS)}")
    unknown = [k for k in data if k not in (*SECTIONS, "name")]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), SECTIONS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown key{hint}", str(unknown[0]))
    resolved = _resolve_presets(data, base_dir)
    resolved.setdefault("name", name)
    resolved.setdefault("strategy", {})
    try:
        scenario = Scenario.model_validate(resolved)
    except ValidationError as exc:
        raise config_error_from(exc, Scenario) from None
    _check_bandwidths(scenario)
    return scenario


def _check_bandwidths(scenario: Scenario) -> None:
    """A scenario's memory and network bandwidths are positive: data crosses each of them,
    and at zero every transfer would take forever (``step time nan``, a simulator
    deadlock). Checked on user scenarios; the co-design generator may reach a zero
    allocation, which its search scores as infeasible."""
    system = scenario.system
    for path, value in (
        ("system.accelerator.memory_bandwidth", system.accelerator.memory_bandwidth),
        ("system.intra_node.bandwidth", system.intra_node.bandwidth),
        ("system.inter_node.bandwidth", system.inter_node.bandwidth),
    ):
        if not value > 0:
            raise ConfigError(f"must be > 0 (got {value:g})", path)


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario file (YAML or JSON); errors name the file and the key path."""
    folder = Path(path).parent
    return load_config_file(
        path, lambda data, name: scenario_from_dict(data, name=name, base_dir=folder)
    )


def accelerator_from(section: object, path: str = "accelerator") -> AcceleratorSpec:
    """Build an accelerator spec from a preset name or mapping."""
    try:
        data = resolve_calibration(resolve_section("accelerators", section, path), Path("."))
        return AcceleratorSpec.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, AcceleratorSpec, path) from None


def model_from(section: object, path: str = "model") -> ModelSpec:
    """Build a model spec from a preset name or mapping."""
    try:
        return ModelSpec.model_validate(resolve_model(section, path, Path(".")))
    except ValidationError as exc:
        raise config_error_from(exc, ModelSpec, path) from None


def system_from(section: object, path: str = "system") -> SystemSpec:
    """Build a system spec from a preset name or mapping."""
    data = resolve_section("systems", section, path)
    if "accelerator" in data:
        data["accelerator"] = resolve_calibration(
            resolve_section("accelerators", data["accelerator"], f"{path}.accelerator"),
            Path("."),
        )
    try:
        return SystemSpec.model_validate(data)
    except ValidationError as exc:
        raise config_error_from(exc, SystemSpec, path) from None


def with_model(scenario: Scenario, model: ModelSpec) -> Scenario:
    """``scenario`` with its model replaced by ``model``, validated again (the strategy's
    checks against the model, such as stage_layers summing to num_layers, apply)."""
    try:
        return Scenario.model_validate({**scenario.model_dump(), "model": model.model_dump()})
    except ValidationError as exc:
        raise config_error_from(exc, Scenario) from None


def default_scenario() -> Scenario:
    """The built-in default scenario (``specs/data/scenarios/default.yaml``)."""
    from importlib import resources

    text = resources.files("deepflow.specs").joinpath("data", "scenarios", "default.yaml")
    return scenario_from_dict(yaml.safe_load(text.read_text("utf-8")), name="default")
