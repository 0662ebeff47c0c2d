"""FP8 recipes (strategy.fp8_recipe, deepflow.specs.fp8, deepflow.estimate.fp8)."""

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.helpers import batch_of, scenario

from deepflow.cli import main
from deepflow.errors import ConfigError
from deepflow.estimate import evaluate
from deepflow.estimate.context import Env
from deepflow.estimate.fp8 import quantization_time
from deepflow.hardware.roofline import memory_time
from deepflow.search.space import SearchSpace
from deepflow.specs.fp8 import (
    DEFAULT_FP8_RECIPE,
    FP8Recipe,
    quantize_bytes,
    weight_copy_bytes,
    weight_quantize_bytes,
)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_quantization_bytes_hand_worked() -> None:
    """Bytes per element of one quantization kernel: read bf16 (2), write each FP8 copy
    (1 + scales); current scaling reads the tensor once more for its amax (2)."""
    # Hopper (TN-only FP8 GEMMs): rowwise + transposed copy
    assert quantize_bytes(FP8Recipe.DELAYED, False) == 2 + 1 + 1
    assert quantize_bytes(FP8Recipe.TENSORWISE, False) == 2 + 2 + 1 + 1
    assert quantize_bytes(FP8Recipe.BLOCKWISE, False) == 2 + 2 * (1 + 4 / 128)
    # Blackwell: per-tensor scaling keeps one copy, MXFP8 two with an E8M0 byte per 32
    assert quantize_bytes(FP8Recipe.DELAYED, True) == 2 + 1
    assert quantize_bytes(FP8Recipe.MXFP8, True) == 2 + 2 * (1 + 1 / 32)
    # the weight cache: Hopper delayed = FP8 + transpose, 2 bytes per parameter
    assert weight_copy_bytes(FP8Recipe.DELAYED, False) == 2.0
    assert weight_copy_bytes(FP8Recipe.MXFP8, True) == 2 * (1 + 1 / 32)
    assert weight_quantize_bytes(FP8Recipe.TENSORWISE, False) == 2 + 2 + 2


def test_one_layer_quantization_time_hand_worked() -> None:
    """The first MLP GEMM of Llama 2 7B (h = 4096, ffn 11008 x 2 for SwiGLU), tp 1, mbs 1,
    seq 4096, delayed scaling on an H100, 8 micro-batches: forward quantizes X (4096 x 4096
    values at 4 B) and 1/8 of the weight refresh (4096 x 22016 at 2 + 2 B); backward dY
    (4096 x 22016 at 4 B)."""
    s = scenario("llama2-7b", "dgx-h100", 8, 64, precision="fp8", micro_batch_size=1)
    env = Env.build(s.model, s.system, batch_of(s), 64)
    assert env.micro_batches[0] == 8
    rows, k, n = 4096.0, 4096.0, 22016.0
    fwd, bwd = quantization_time(env, np.array([rows]), k, n, np.array([k * n]))
    x_bytes = rows * k * 4.0 + k * n * 4.0 / 8
    dy_bytes = rows * n * 4.0
    acc = s.system.accelerator
    assert fwd[0] == pytest.approx(float(memory_time(x_bytes, acc, 1.0)))
    assert bwd[0] == pytest.approx(float(memory_time(dy_bytes, acc, 1.0)))


def test_default_recipe_is_megatrons_delayed() -> None:
    s = scenario("llama2-7b", "dgx-h100", 8, 64, tp=2, zero=1, precision="fp8")
    assert s.strategy.fp8_recipe is None
    assert s.strategy.effective_fp8_recipe is DEFAULT_FP8_RECIPE is FP8Recipe.DELAYED
    explicit = scenario(
        "llama2-7b", "dgx-h100", 8, 64, tp=2, zero=1, precision="fp8", fp8_recipe="delayed"
    )
    current = scenario(
        "llama2-7b", "dgx-h100", 8, 64, tp=2, zero=1, precision="fp8", fp8_recipe="tensorwise"
    )
    a = evaluate(s.model, s.system, 64, batch_of(s, explicit, current))
    assert a.feasible.all()
    assert a.step_time[0] == a.step_time[1]
    # the amax pass of current scaling is costed in the layers' GEMMs
    assert a.step_time[2] > a.step_time[1]
    assert a.breakdown["compute"][2] > a.breakdown["compute"][1]


def test_bf16_costs_no_quantization() -> None:
    s = scenario("llama2-7b", "dgx-h100", 8, 64)
    env = Env.build(s.model, s.system, batch_of(s), 64)
    fwd, bwd = quantization_time(env, np.array([4096.0]), 4096.0, 4096.0, np.array([1e7]))
    assert fwd[0] == bwd[0] == 0.0


def test_mxfp8_on_hopper_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        scenario("llama2-7b", "dgx-h100", 8, 64, precision="fp8", fp8_recipe="mxfp8")
    assert err.value.path == "strategy.fp8_recipe"
    assert "mxfp8" in err.value.message and "h100-sxm5-80gb" in err.value.message
    scenario("llama2-7b", "dgx-b200", 8, 64, precision="fp8", fp8_recipe="mxfp8")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("precision: fp8, fp8_recipe: mxfp8", "strategy.fp8_recipe"),
        ("fp8_recipe: delayed", "strategy.fp8_recipe"),
        ("fp8_param_gather: true", "strategy.fp8_param_gather"),
        ("precision: fp8, fp8_recipe: nvfp4", "strategy.fp8_recipe"),
    ],
)
def test_bad_fp8_keys_exit_2_naming_the_key(tmp_path, text: str, key: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "model: llama2-7b\n"
        "system: {preset: dgx-h100, num_accelerators: 8}\n"
        f"strategy: {{tp: 1, {text}}}\n"
        "training: {global_batch_size: 64}\n"
    )
    result = CliRunner().invoke(main, ["predict", str(bad), "--json"])
    assert result.exit_code == 2, result.output
    assert f"bad.yaml: {key}: " in result.output and "Traceback" not in result.output


def test_search_covers_the_recipes_the_chip_runs() -> None:
    hopper = scenario("llama2-7b", "dgx-h100", 8, 64, precision="fp8")
    blackwell = scenario("llama2-7b", "dgx-b200", 8, 64, precision="fp8")
    bf16 = scenario("llama2-7b", "dgx-b200", 8, 64)
    codes = {
        name: set(SearchSpace.from_scenario(s).columns["fp8_recipe"].tolist())
        for name, s in (("h", hopper), ("b", blackwell), ("bf16", bf16))
    }
    assert codes == {"h": {0, 1, 3}, "b": {0, 1, 2, 3}, "bf16": {-1}}


knobs = st.fixed_dictionaries(
    {
        "tp": st.sampled_from([1, 2, 4]),
        "pp": st.sampled_from([1, 2]),
        "zero": st.integers(0, 3),
        "micro_batch_size": st.sampled_from([1, 2]),
        "recompute": st.sampled_from(["none", "selective", "full"]),
        "sequence_parallel": st.booleans(),
    }
)
systems = st.sampled_from(["dgx-h100", "dgx-b200", "gb300-nvl72"])


def _recipes(system: str) -> list[str]:
    hopper = system == "dgx-h100"
    return ["tensorwise", "delayed", "blockwise"] + ([] if hopper else ["mxfp8"])


def _pair(system: str, kw: dict, **fp8) -> tuple:
    gpus = 72 if system == "gb300-nvl72" else 8
    base = scenario("llama2-7b", system, gpus, 144 if gpus == 72 else 64, **kw)
    other = scenario("llama2-7b", system, gpus, 144 if gpus == 72 else 64, **kw, **fp8)
    return base, other


@SETTINGS
@given(knobs, systems, st.data())
def test_fp8_never_needs_less_memory_than_bf16_without_fp8_weights(kw, system, data) -> None:
    """FP8 keeps the 16-bit weights and adds the FP8 weight cache, and saves activations at
    16 bits: it never predicts less memory than BF16 for the same strategy."""
    recipe = data.draw(st.sampled_from(_recipes(system)))
    bf16, fp8 = _pair(system, kw, precision="fp8", fp8_recipe=recipe)
    r = evaluate(bf16.model, bf16.system, bf16.training.global_batch_size, batch_of(bf16, fp8))
    assert r.peak_memory[1] >= r.peak_memory[0]
    assert r.memory["weights"][1] >= r.memory["weights"][0]


@SETTINGS
@given(knobs, systems, st.data())
def test_fp8_primary_weights_save_memory_and_gather_time(kw, system, data) -> None:
    """FP8 primary weights (fp8_param_gather) replace the 16-bit copy: weights never grow,
    and the parameter all-gather moves 1 byte per parameter instead of 2, so the step never
    gets longer."""
    recipe = data.draw(st.sampled_from(_recipes(system)))
    _, plain = _pair(system, kw, precision="fp8", fp8_recipe=recipe)
    gathered = plain.model_copy(
        update={"strategy": plain.strategy.replace(fp8_param_gather=True)}
    )
    r = evaluate(plain.model, plain.system, plain.training.global_batch_size,
                 batch_of(plain, gathered))  # fmt: skip
    assert r.memory["weights"][1] <= r.memory["weights"][0]
    if r.feasible.all():
        assert r.step_time[1] <= r.step_time[0] * (1 + 1e-12)


@SETTINGS
@given(knobs, st.sampled_from(["dgx-h100", "dgx-b200"]))
def test_current_scaling_costs_at_least_delayed(kw, system) -> None:
    """Tensorwise (current) scaling adds an amax pass to delayed scaling's cast: the same
    strategy is never faster with it, and FP8 quantization time is bounded by the bytes
    of its kernels (step never shorter than delayed's)."""
    delayed, current = _pair(system, kw, precision="fp8", fp8_recipe="tensorwise")
    delayed = delayed.model_copy(
        update={"strategy": delayed.strategy.replace(precision="fp8", fp8_recipe="delayed")}
    )
    r = evaluate(delayed.model, delayed.system, 64, batch_of(delayed, current))
    if r.feasible.all():
        assert r.step_time[1] >= r.step_time[0] * (1 - 1e-12)


def test_blackwell_ultra_presets() -> None:
    """B300/GB300 take the Blackwell kernel curves at their own data-sheet peaks; GB300 NVL72
    is one 72-GPU NVLink domain at 1.8 TB/s bidirectional per GPU."""
    from deepflow.specs import accelerator_from, system_from

    for name, table, fp8 in (("b300", "b200", 4.5e15), ("gb300", "gb200", 5e15)):
        acc = accelerator_from(name)
        assert acc.kernel_table == table and acc.microscaling and acc.sources
        assert acc.peak_flops.fp8 == fp8 and acc.peak_flops.bf16 == fp8 / 2
    nvl = system_from({"preset": "gb300-nvl72", "num_accelerators": 144})
    assert nvl.accelerator.name == "gb300" and nvl.scale_up_size == 72
    assert nvl.intra_node.bandwidth == 900e9
    assert not accelerator_from("h100-sxm5-80gb").microscaling
