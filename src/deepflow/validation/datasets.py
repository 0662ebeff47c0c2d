"""Published training-step measurements, each turned into a deepflow scenario.

A validation *case* pairs one measured iteration time with the scenario that describes the
run that produced it, so that a prediction can be compared with the measurement row by row.
The measurements ship inside the package, under ``validation/data/`` (each folder has a
README with source, commit, license, column meanings and caveats):

========================  ======  ===============================================================
loader                    rows    source
========================  ======  ===============================================================
megatron_2021_cases       10      Narayanan et al. 2021 (SC21, arXiv 2104.04473), Table 1;
                                  Megatron-LM on Selene (DGX A100 80 GB), 32-3,072 GPUs
megatron_2020_cases       12      Megatron-LM README of September 2020 (commit 5281919);
                                  DGX-2 (V100) and DGX-A100, 1-1,024 GPUs
vtrain_multi_cases        109     vTrain (Bang et al., MICRO 2024, arXiv 2312.12391), commit
                                  f8dda84: Megatron-DeepSpeed on A100, 64-512 GPUs
vtrain_single_cases       1,440   same repository: 2-8 A100 GPUs in one node
simumax_b200_cases        24      SimuMax (Moore Threads) commit 4dcaae5: measured Megatron-LM
                                  runs of truncated Llama-3 70B/405B on one 8x B200 node
========================  ======  ===============================================================

What the sources print is copied; what they leave out is a modelling choice, made once here
and written into each case's ``notes`` so that every comparison says what it assumed. The
choices, by data set:

* **Megatron 2021 (S01).** The paper reports TFLOP/s per GPU, not time. The measured step time
  is the *implied* time F / (TFLOP/s x 1e12 x GPUs), with Megatron's hardware-FLOP count
  F = 96 B s l h^2 (1 + s / 6h + V / 16 l h), the count behind the paper's Table 1 (the 96
  includes the recomputed forward pass). The published TFLOP/s have 3 significant figures,
  so the implied times carry about +/-0.4 % rounding. ``overlap_grad_reduce`` follows the DDP implementation of the
  authors' script: PyTorch DDP (``torch``) overlaps the gradient all-reduce with the backward
  pass in buckets; Megatron's ``local`` DDP all-reduces one contiguous buffer after it.
* **Megatron 2020 (S04).** Recompute is not stated; ``full`` is chosen because the published
  TFLOP/s reproduce the published iteration times to 0.1 % only with the 96-factor
  (recompute-inclusive) count. The micro batch is not stated; the per-replica batch
  (global batch / DP) is taken as one micro batch (no gradient accumulation). The DDP
  implementation is not stated; Megatron-LM's default ``--DDP-impl local`` (no overlap) is
  assumed. The A100 memory size is not stated; 40 GB is assumed (the 80 GB A100 was
  announced in November 2020, after the README).
* **vTrain.** The settings come from vTrain's validation configs (``use_checkpoint: true``,
  ``use_gradient_bucket: false``, ``pipeline_scheduling: 1f1b``). The CSV's micro batch is
  honoured, also where PP = 1 (vTrain's own loader would replace it with global batch / DP;
  the CSV records the run as measured). The vocabulary is vTrain's default, 50,257. The A100
  variant is not stated; the 80 GB DGX A100 preset is used.

Every case names the framework its run used (``strategy.framework``,
:mod:`deepflow.specs.framework`): ``megatron-lm`` for the Megatron-LM 2020 and 2021 rows,
``megatron-deepspeed`` for vTrain, ``fsdp`` / ``fsdp-compiled`` for fms-fsdp and
``megatron-core`` for the Megatron-Core and SimuMax rows. The first three code bases run
eager PyTorch and apex kernels, not Transformer Engine (their profiles set
``fused_epilogues: false`` and no flash attention): the QKV projection adds its bias in a separate pass
(Megatron-LM 2020-2021: ``F.linear`` on a 3-D input, which PyTorch of that time runs as
``matmul`` then ``add_`` of the bias; Megatron-DeepSpeed: ``output + bias`` after the matmul
in its async-communication linear), each bias gradient is a reduction over the output
gradient (``grad_output.sum(0)``, or autograd's sum over the broadcast dimensions),
and the layer norm is apex's ``FusedLayerNorm``, whose weight gradient re-reads the output
gradient and the input (``cuComputePartGradGammaBeta``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from deepflow.specs import ModelSpec, Scenario, scenario_from_dict
from deepflow.specs.scenario import system_from
from deepflow.validation.nccl import ring_step_latency

__all__ = [
    "DATASETS",
    "VTRAIN_VOCAB",
    "Case",
    "fms_fsdp_cases",
    "megatron_2020_cases",
    "megatron_2021_cases",
    "megatron_core_flops",
    "megatron_hardware_flops",
    "megatron_moe_modelzoo_cases",
    "read_data_csv",
    "simumax_b200_cases",
    "vtrain_multi_cases",
    "vtrain_single_cases",
]


@dataclass(frozen=True)
class Case:
    """One measurement and the scenario of the run that produced it.

    ``scenario`` is a plain mapping in the format of spec/scenario.md (build it with
    :meth:`to_scenario`); ``measured_step_time_s`` is the measured time of one optimizer step
    in seconds; ``notes`` lists the configuration the source does not state and what was
    assumed for it; ``measured_peak_memory_bytes``, where the source measured it, is the
    peak memory the tensors of one rank took (``torch.cuda.max_memory_allocated``).
    """

    dataset: str
    row_id: str
    description: str
    scenario: dict[str, Any] = field(hash=False)
    measured_step_time_s: float
    notes: str = ""
    measured_peak_memory_bytes: float | None = None

    def to_scenario(self) -> Scenario:
        """The validated :class:`~deepflow.specs.Scenario` of this case."""
        return scenario_from_dict(self.scenario, name=f"{self.dataset}/{self.row_id}")


def read_data_csv(*parts: str) -> list[dict[str, str]]:
    """Rows of a CSV shipped under ``deepflow/validation/data/`` as header-keyed mappings.

    The files are kept byte-identical to their sources: the vTrain CSVs start with a UTF-8
    byte-order mark and all of them end lines with CRLF. Decoding with ``utf-8-sig`` drops
    the mark (else the first column name would begin with U+FEFF), and reading through
    ``StringIO(newline="")`` leaves line endings to the ``csv`` module, which understands
    CRLF and quoted fields (RFC 4180).
    """
    node = resources.files("deepflow.validation") / "data"
    for part in parts:
        node = node / part
    text = node.read_bytes().decode("utf-8-sig")
    return list(csv.DictReader(io.StringIO(text, newline="")))


def megatron_hardware_flops(
    global_batch: int, seq_len: int, num_layers: int, hidden: int, vocab: int
) -> float:
    """FLOPs of one Megatron-LM iteration with full recomputation (hardware FLOPs).

    F = 96 B s l h^2 (1 + s / 6h + V / 16 l h), the count with which Narayanan et al. 2021
    ("Efficient Large-Scale Language Model Training on GPU Clusters Using Megatron-LM",
    arXiv 2104.04473) report Table 1. One layer's forward pass costs
    24 B s h^2 (1 + s / 6h) (the GEMMs plus the two s x s attention products); forward,
    backward (2x) and the recomputed forward make 4x that, hence 96 = 4 x 24. The logit
    layer, 2 B s h V forward, is counted 3x (it is not recomputed): 6 B s h V. Without
    recomputation (model FLOPs) the layer term drops from 96 to 72.
    """
    b, s, n, h, v = global_batch, seq_len, num_layers, hidden, vocab
    return 96.0 * b * s * n * h * h * (1.0 + s / (6.0 * h) + v / (16.0 * n * h))


def _description(
    name: str, gpus: int, tp: int, pp: int, vpp: int, dp: int, mb: int, gb: int
) -> str:
    """A one-line label of a run, e.g. ``GPT-18.4B 256 GPUs tp8 pp1 dp32 mb8 gb1024``."""
    interleave = f" vpp{vpp}" if vpp > 1 else ""
    return (
        f"{name} {gpus} GPU{'s' if gpus > 1 else ''} tp{tp} pp{pp}{interleave} dp{dp} mb{mb} gb{gb}"
    )


def _gpt_model(
    name: str,
    layers: int,
    hidden: int,
    heads: int,
    seq_len: int,
    vocab: int,
    sources: list[str],
) -> dict[str, Any]:
    """A Megatron GPT: GeLU MLP of 4h, learned position embeddings, multi-head attention.

    Megatron-LM's and Megatron-DeepSpeed's ``GPTModel`` compute the logits with the word
    embedding matrix (``parallel_lm_logits(..., word_embeddings_weight)``), so input and
    output embeddings are tied.
    """
    return {
        "name": name,
        "num_layers": layers,
        "hidden_size": hidden,
        "num_attention_heads": heads,
        "ffn_hidden_size": 4 * hidden,
        "ffn_type": "gelu",
        "vocab_size": vocab,
        "seq_len": seq_len,
        "learned_position_embeddings": True,
        "tie_embeddings": True,
        "sources": sources,
    }


# --- Megatron-LM, published (data/published/megatron_2020_2021.csv) -------------------------

_PUBLISHED_CSV = ("published", "megatron_2020_2021.csv")
_S01_SOURCE = (
    "Narayanan et al. 2021, Efficient Large-Scale Language Model Training on GPU Clusters "
    "Using Megatron-LM, arXiv 2104.04473, Table 1; configuration from "
    "examples/sc21/run_table_1.sh (Megatron-LM de7dc40f88)"
)
_S04_SOURCE = (
    "Megatron-LM README, September 2020 (commit 5281919420ac4eb649e6aee9652ff39bb94d462a), "
    "images/tables.tex"
)


def _published_rows(source_id: str) -> list[dict[str, str]]:
    return [r for r in read_data_csv(*_PUBLISHED_CSV) if r["source_id"] == source_id]


def megatron_2021_cases() -> list[Case]:
    """The 10 rows of Narayanan et al. 2021, Table 1 (GPT 1.7 B-1 T on 32-3,072 A100 80 GB).

    The paper gives achieved TFLOP/s per GPU; the measured step time is the implied time
    F / (TFLOP/s x 1e12 x GPUs), F from :func:`megatron_hardware_flops` (the README of
    ``data/published/`` tabulates these derived times, 3.53 s ... 102.63 s). Everything in
    the scenario comes from the authors' reproduction script except ``flash_attention``
    (2021 Megatron-LM materialised the s x s attention scores; FlashAttention, Dao et al.
    2022, came later), and ``overlap_grad_reduce`` and ``fp32_main_grads``, derived from the
    DDP implementation (PyTorch DDP: overlapped, fp16 gradients; Megatron's local DDP:
    reduced after the backward pass, fp32 ``main_grad`` buffers).
    """
    cases = []
    for r in _published_rows("S01"):
        gpus, tp, pp, dp = (int(r[k]) for k in ("num_accelerators", "tp", "pp", "dp"))
        vpp = int(r["vpp_chunks"] or 1)
        mb, gb = int(r["micro_batch_size"]), int(r["global_batch_seqs"])
        layers, hidden = int(r["num_layers"]), int(r["hidden_size"])
        seq, vocab = int(r["seq_len"]), int(r["vocab_size"])
        flops = megatron_hardware_flops(gb, seq, layers, hidden, vocab)
        measured = flops / (float(r["tflops_per_accel"]) * 1e12 * gpus)
        torch_ddp = "DDP impl: torch" in r["zero_or_fsdp"]
        scenario = {
            "model": _gpt_model(
                r["model_name"],
                layers,
                hidden,
                int(r["num_attention_heads"]),
                seq,
                vocab,
                [_S01_SOURCE],
            ),
            "system": {"preset": "dgx-a100-80gb", "num_accelerators": gpus},
            "strategy": {
                "tp": tp,
                "pp": pp,
                "dp": dp,
                "vpp": vpp,
                "micro_batch_size": mb,
                "recompute": "full",
                "sequence_parallel": False,
                "precision": "fp16",
                "framework": "megatron-lm",
                "pipeline_schedule": "interleaved" if vpp > 1 else "1f1b",
                # the profile's defaults are local DDP's; torch DDP overlaps the all-reduce
                # and keeps fp16 .grad
                "overlap_grad_reduce": torch_ddp,
                "fp32_main_grads": not torch_ddp,
            },
            "training": {"global_batch_size": gb},
        }
        notes = (
            f"Measured time implied from {r['tflops_per_accel']} TFLOP/s per GPU with "
            "F = 96 B s l h^2 (1 + s/6h + V/16lh) (about +/-0.4 % from rounding); end-to-end "
            "throughput incl. data loading, optimizer and logging. "
            + (
                "DDP impl torch: gradient all-reduce overlapped with backward."
                if torch_ddp
                else "DDP impl local: gradient all-reduce after backward, not overlapped."
            )
            + " flash_attention false: not available in 2021 Megatron-LM."
        )
        cases.append(
            Case(
                dataset="megatron-2021",
                row_id=r["row_id"],
                description=_description(r["model_name"], gpus, tp, pp, vpp, dp, mb, gb),
                scenario=scenario,
                measured_step_time_s=measured,
                notes=notes,
            )
        )
    return cases


def _megatron_strategy(
    tp: int, pp: int, dp: int, mb: int, framework: str = "megatron-lm"
) -> dict[str, Any]:
    """The Megatron-LM setup of the 2020 README and vTrain's runs (``framework``
    megatron-lm or megatron-deepspeed: unfused attention, gradients reduced after the
    backward pass, eager bias and norm kernels): full activation recomputation, no sequence
    parallelism, fp16, 1F1B."""
    return {
        "framework": framework,
        "tp": tp,
        "pp": pp,
        "dp": dp,
        "vpp": 1,
        "micro_batch_size": mb,
        "recompute": "full",
        "sequence_parallel": False,
        "precision": "fp16",
        "pipeline_schedule": "1f1b",
    }


def megatron_2020_cases() -> list[Case]:
    """The 12 rows of the Megatron-LM README of September 2020 (GPT-2-style 1.2 B-8.7 B).

    Three experiments: tensor-parallel weak scaling on 1-8 GPUs of a DGX-2 (V100, batch 8)
    and of a DGX-A100 (batch 16), and the same models with 128-way data parallelism on a
    DGX-A100 cluster (global batch 2,048). The measured step time is the published
    iteration time. Configuration the README does not state (see the module docstring):
    recompute (``full``), micro batch (= global batch / DP), DDP implementation (``local``,
    no overlap), A100 memory (40 GB) and the inter-node network (the preset's).
    """
    cases = []
    for r in _published_rows("S04"):
        gpus, tp, pp, dp = (int(r[k]) for k in ("num_accelerators", "tp", "pp", "dp"))
        gb = int(r["global_batch_seqs"])
        mb = gb // dp
        dgx2 = "DGX-2" in r["accelerator"]
        preset = "dgx-2" if dgx2 else "dgx-a100-40gb"
        name = r["model_name"]
        scenario = {
            "model": _gpt_model(
                name,
                int(r["num_layers"]),
                int(r["hidden_size"]),
                int(r["num_attention_heads"]),
                int(r["seq_len"]),
                int(r["vocab_size"]),
                [_S04_SOURCE],
            ),
            "system": {"preset": preset, "num_accelerators": gpus},
            "strategy": _megatron_strategy(tp, pp, dp, mb),
            "training": {"global_batch_size": gb},
        }
        notes = [
            "recompute not stated: full assumed, because the published TFLOP/s match the "
            "iteration times within 0.1 % only under the recompute-inclusive 96-factor count.",
            f"micro batch not stated: the per-replica batch {gb}/{dp} = {mb} taken as one "
            "micro batch (no gradient accumulation).",
            "DDP implementation not stated: Megatron-LM's default --DDP-impl local assumed "
            "(gradient all-reduce after backward, not overlapped).",
            "flash_attention false: not available in 2020.",
        ]
        if not dgx2:
            notes.append(
                "A100 memory not stated: 40 GB assumed (Sep 2020; the 80 GB A100 came in Nov 2020)."
            )
            if gpus > 8:
                notes.append("inter-node network not stated: the preset's is used.")
        cases.append(
            Case(
                dataset="megatron-2020",
                row_id=r["row_id"],
                description=_description(name, gpus, tp, pp, 1, dp, mb, gb),
                scenario=scenario,
                measured_step_time_s=float(r["iter_time_s"]),
                notes=" ".join(notes),
            )
        )
    return cases


# --- vTrain (data/vtrain/data/ground_truth_{multi,single}.csv) ------------------------------

_VTRAIN_SOURCE = (
    "vTrain ground truth (Bang et al., MICRO 2024, arXiv 2312.12391), "
    "github.com/VIA-Research/vTrain f8dda8473a48b373b1d25f51f52d685bff5150c5"
)
#: vTrain's simulator default vocabulary (src/config.py): the GPT-2 BPE vocabulary.
VTRAIN_VOCAB = 50257
#: the system preset of vTrain's A100 nodes
VTRAIN_PRESET = "dgx-a100-80gb"
_VTRAIN_NOTES = (
    "Megatron-DeepSpeed; settings from vTrain's validation configs (use_checkpoint true, "
    "use_gradient_bucket false, pipeline_scheduling 1f1b). Vocabulary not in the CSV: "
    "vTrain's default 50257 (Megatron pads it for its kernels). A100 variant not stated: "
    "80 GB assumed. Inter-node bandwidth from vTrain's config: 800 Gb/s per 8-GPU node = "
    "12.5 GB/s per GPU. Intra-node all-reduce step latency fitted to vTrain's measured "
    "A100 all-reduce tables (9.6 us). fp16 gradients (fp32_main_grads false): "
    "--accumulate-allreduce-grads-in-fp32 is off by default in Megatron-DeepSpeed."
)


def _vtrain_system(gpus: int) -> dict[str, Any]:
    """The cluster of vTrain's configs: nodes of 8 A100s (``node_size`` 8) on NVSwitch.

    vTrain's configs set ``inter_node_bandwidth: 800``, documented in its ``src/config.py``
    as the *total* inter-node bandwidth in Gb/s, i.e. per node; shared by the node's 8 GPUs
    that is 100 Gb/s = 12.5 GB/s per GPU, where the DGX A100 preset has 25 GB/s (one
    200 Gb/s HCA per GPU). The configs' ``intra_node_bandwidth: 150`` (GB/s) is not taken:
    vTrain's own measured A100 all-reduce tables reach 229 GB/s bus bandwidth on 8 GPUs,
    above 150, so it is not the link rate; the preset's NVLink 3 rate stays.

    The scale-up latency is that of the machine the rows ran on: the per-step latency of
    deepflow's ring all-reduce that best fits vTrain's measured all-reduce tables of that
    node (:func:`deepflow.validation.nccl.ring_step_latency`, 2 to 8 GPUs, 1 MiB-1 GiB, at
    the preset's 300 GB/s and 0.76 bus efficiency: 9.6 us per step). The preset's generic
    2 us made a 2 MiB tensor-parallel all-reduce 3.9x (2 GPUs) to 2.1x (8 GPUs) faster
    than those tables measure it; vTrain's own simulator times these collectives from the
    same tables (``src/predictor.py``, ``vTrain.compute_comm_time``).
    """
    node = system_from(VTRAIN_PRESET)
    latency = ring_step_latency("a100", node.intra_node.bandwidth, node.intra_node.efficiency)
    return {
        "preset": VTRAIN_PRESET,
        "num_accelerators": gpus,
        "intra_node": {"latency": latency},
        "inter_node": {"bandwidth": "12.5 GB/s"},
    }


def _vtrain_case(dataset: str, row_id: str, name: str, r: dict[str, str], note: str) -> Case:
    gpus = int(r["# GPUs"])
    tp, dp, pp = (
        int(r[k]) for k in ("tensor parallelism", "data parallelism", "pipeline parallelism")
    )
    mb, gb = int(r["micro batch"]), int(r["global batch"])
    scenario = {
        "model": _gpt_model(
            name,
            int(r["# layers"]),
            int(r["hidden size"]),
            int(r["attention heads"]),
            int(r["sequence length"]),
            VTRAIN_VOCAB,
            [_VTRAIN_SOURCE],
        ),
        "system": _vtrain_system(gpus),
        "strategy": {
            **_megatron_strategy(tp, pp, dp, mb, "megatron-deepspeed"),
            # fp16 runs: Megatron-DeepSpeed accumulates and all-reduces gradients in the
            # parameter precision unless --accumulate-allreduce-grads-in-fp32 (off by
            # default, forced on only for bf16: megatron/arguments.py); vTrain's simulator
            # counts 2-byte gradients (src/predictor.py, ParamInfo elem_size=2)
            "fp32_main_grads": False,
        },
        "training": {"global_batch_size": gb},
    }
    notes = [_VTRAIN_NOTES, note]
    if pp == 1 and mb * dp != gb:
        notes.append(
            f"PP 1: the CSV's micro batch {mb} is honoured ({gb // (mb * dp)} micro batches); "
            f"vTrain's loader would use global batch / DP = {gb // dp}."
        )
    return Case(
        dataset=dataset,
        row_id=row_id,
        description=_description(name, gpus, tp, pp, 1, dp, mb, gb),
        scenario=scenario,
        measured_step_time_s=float(r["iteration time (ms)"]) / 1000.0,
        notes=" ".join(n for n in notes if n),
    )


def vtrain_multi_cases() -> list[Case]:
    """The 109 multi-node rows of vTrain (GPT 3.6 B-175 B on 64-512 A100s, sequence 2,048).

    ``row_id`` is the 0-based data row as three digits. The upstream vTrain input of a row is
    ``config/validation/multi/config_val_<3B|18B|39B|175B>_<TP>_<DP>_<PP>_<micro batch>.json``
    (one configuration, 175B 4/4/32/2, was measured twice).
    """
    tags = {"3.6": "3B", "18.4": "18B", "39.1": "39B", "175": "175B"}
    cases = []
    for i, r in enumerate(read_data_csv("vtrain", "data", "ground_truth_multi.csv")):
        params = r["Parameters (billion)"]
        config = "config_val_{}_{}_{}_{}_{}.json".format(
            tags.get(params, params),
            r["tensor parallelism"],
            r["data parallelism"],
            r["pipeline parallelism"],
            r["micro batch"],
        )
        note = f"Upstream vTrain input: config/validation/multi/{config}."
        cases.append(_vtrain_case("vtrain-multi", f"{i:03d}", f"GPT-{params}B", r, note))
    return cases


def vtrain_single_cases() -> list[Case]:
    """The 1,440 single-node rows of vTrain (small GPTs on 2-8 A100s, sequence 1,024).

    ``row_id`` is the 0-based data row as four digits: row ``i`` is exactly upstream
    ``config/validation/single/config_val_single_<i>.json`` (``0818`` ships as an example).
    """
    cases = []
    for i, r in enumerate(read_data_csv("vtrain", "data", "ground_truth_single.csv")):
        name = f"GPT-h{r['hidden size']}-l{r['# layers']}"
        note = f"Upstream vTrain input: config/validation/single/config_val_single_{i:04d}.json."
        cases.append(_vtrain_case("vtrain-single", f"{i:04d}", name, r, note))
    return cases


# --- PyTorch FSDP / HSDP (fms-fsdp, V2-S06) -------------------------------------------------

_FMS_SHAPES = {
    # variant: layers, hidden, heads, kv heads, ffn (fms_fsdp/utils/config_utils.py at the
    # cited commits; 7b = ibm-fms LLaMAConfig defaults)
    "7b": (32, 4096, 32, 32, 11008),
    "13b": (40, 5120, 40, 40, 13824),
    "34b": (48, 8192, 64, 8, 22016),
    "70b": (80, 8192, 64, 8, 28672),
}
_FMS_SOURCE = (
    "IBM fms-fsdp README 'Training throughput benchmarks' (commits 4ffb9bd, ed74fd5); "
    "shapes from fms_fsdp/utils/config_utils.py"
)
_FMS_NOTES = (
    "fms-fsdp: PyTorch FSDP1, bf16 MixedPrecision (parameters, reductions and buffers in bf16: "
    "fms_fsdp/policies/mixed_precision.py bfSixteen), so gradients are reduced in bf16 "
    "(fp32_main_grads false); one FSDP unit per LLaMA block; SDPA flash attention; ibm-fms "
    "eager kernels (framework fsdp) or torch.compile (framework fsdp-compiled). The network figure ('400Gbps' on A100, '800 Gbps' on "
    "H100) is read as per node, shared by its 8 GPUs: 6.25 and 12.5 GB/s per GPU; NVLink "
    "inside the node (DGX presets). 'Selective AC' is fms-fsdp's block-level selective "
    "checkpointing (fms_fsdp/policies/ac_handler.py apply_fsdp_checkpointing: a fraction p "
    "of the blocks); p is not stated and is inferred from the source's HFU/MFU ratio "
    "(1 + p/3): one block in two for 13b, every block for 34b and 70b."
)


#: fraction of blocks fms-fsdp's "Selective AC" checkpoints, per model: not stated, inferred
#: from the source's own HFU/MFU ratio, which is 1 + f/3 when a fraction f of the blocks
#: reruns its forward (HFU counts the rerun): 13b rows give f = 0.21-0.47 (one block in
#: two), 34b and 70b rows 0.71-1.04 (every block; the full-AC rows give 0.97-1.13)
_FMS_SELECTIVE_FRACTION = {"13b": 0.5, "34b": 1.0, "70b": 1.0}


def _fms_variant(r: dict[str, str]) -> str:
    name = r["model_name"].split()[2].lower()  # "Llama 2 7B ..." -> "7b"
    return name


def fms_fsdp_cases() -> list[Case]:
    """The 16 rows of IBM fms-fsdp: PyTorch FSDP (FULL_SHARD) and HSDP training of Llama 2
    7B-70B on 128 A100 80GB and 96 H100 80GB, eager and torch.compile (V2-S06).

    The source gives tokens/s per GPU; the measured step time is ``global batch x 4096 /
    (GPUs x tokens/s/GPU)`` with no gradient accumulation (``main_training.py``).
    """
    cases = []
    for r in read_data_csv("v2", "fms_fsdp", "fsdp_llama2_throughput.csv"):
        variant = _fms_variant(r)
        layers, hidden, heads, kv, ffn = _FMS_SHAPES[variant]
        gpus = int(r["num_accelerators"])
        seq = int(r["seq_len"])
        gbs = int(r["global_batch_seqs"])
        mbs = int(r["micro_batch_size"])
        h100 = "H100" in r["accelerator"]
        hsdp = "HYBRID_SHARD" in r["zero_or_fsdp"]
        recompute = r["recompute"]
        compiled = "torch.compile: Y" in r["framework"]
        strategy: dict[str, Any] = {
            "dp": gpus,
            "tp": 1,
            "pp": 1,
            "zero": 3,
            "micro_batch_size": mbs,
            "precision": "bf16",
            # eager rows ran ibm-fms's eager kernels, the May 2024 rows torch.compile
            "framework": "fsdp-compiled" if compiled else "fsdp",
        }
        if hsdp:
            strategy["shard_degree"] = int(r["accel_per_node"])
        if recompute.startswith("full"):
            strategy["recompute"] = "full"
        elif recompute.startswith("selective"):
            strategy["recompute"] = "full"
            strategy["recompute_layers"] = round(layers * _FMS_SELECTIVE_FRACTION[variant])
        scenario = {
            "model": {
                "preset": "llama2-7b",
                "num_layers": layers,
                "hidden_size": hidden,
                "num_attention_heads": heads,
                "num_kv_heads": kv,
                "ffn_hidden_size": ffn,
                "seq_len": seq,
                "vocab_size": int(r["vocab_size"]),
                "sources": [_FMS_SOURCE],
            },
            "system": {
                "preset": "dgx-h100" if h100 else "dgx-a100-80gb",
                "num_accelerators": gpus,
                "inter_node": {"bandwidth": "12.5 GB/s" if h100 else "6.25 GB/s"},
            },
            "strategy": strategy,
            "training": {"global_batch_size": gbs},
        }
        tokens = float(r["tokens_per_s_per_accel"])
        cases.append(
            Case(
                dataset="fms-fsdp",
                row_id=r["row_id"],
                description=(
                    f"Llama 2 {variant.upper()} {'HSDP' if hsdp else 'FSDP'} "
                    f"{gpus}x {'H100' if h100 else 'A100'} "
                    f"{'compile' if compiled else 'eager'} AC={recompute.split()[0]}"
                ),
                scenario=scenario,
                measured_step_time_s=gbs * seq / (gpus * tokens),
                notes=_FMS_NOTES,
            )
        )
    return cases


# --- Megatron-Core MoE: Qwen3-235B-A22B, sharded and long-context (V2-S07) ------------------


def megatron_core_flops(model: ModelSpec, global_batch: int, seq_len: int) -> float:
    """Model FLOPs of one step as Megatron-LM logs them (``megatron/training/training.py``,
    ``num_floating_point_operations``, standard transformer branch): 3 (forward, wgrad,
    dgrad) x 2 (FMA) x, per token, ``h (f_dense * 3|2)`` per dense MLP, ``h (f_moe topk +
    f_shared) * 3|2`` per MoE MLP (3 with SwiGLU), ``h (q + k + v) + q s / 2 * 2 + q h`` per
    attention (``q = kv_channels * heads``, ``k = v = kv_channels * groups``; causal half),
    and ``h V`` for the logits; no recompute term."""
    h, s = model.hidden_size, seq_len
    gated = 3 if model.ffn_type.value == "swiglu" else 2
    q = model.head_dim * model.num_attention_heads
    kv = model.head_dim * model.num_kv_heads
    attn = h * (q + 2 * kv) + q * s / 2 * 2 + q * h
    n_moe = model.num_moe_layers
    n_dense = model.num_layers - n_moe
    mlp = model.ffn_hidden_size * gated * n_dense
    if model.moe is not None:
        f_moe = model.moe.expert_ffn_hidden_size or model.ffn_hidden_size
        shared = model.moe.num_shared_experts * f_moe
        mlp += (f_moe * model.moe.top_k + shared) * gated * n_moe
    per_token = 6 * (h * mlp + attn * model.num_layers + h * model.vocab_size)
    return float(global_batch) * s * per_token


_MODELZOO_SOURCE = (
    "Megatron-MoE-ModelZoo best_practice/qwen3/readme.md and model_configs/benchmarking/"
    "Qwen3-235B-A22B.yaml (commit e865051)"
)
_MODELZOO_NOTES = (
    "Megatron-Core with Transformer Engine on 8-GPU H100 nodes (dgx-h100 preset: NVLink 4, "
    "one 400 Gb/s NIC per GPU, 'InfiniBand 8x50 GB/s per node' in the source) or 4-GPU "
    "GB200 (GB300) trays in one NVL72 domain (gb200-nvl72, gb300-nvl72); MXFP8 rows "
    "as fp8_recipe mxfp8 with fp8_param_gather (the precision-aware optimizer's bf16 Adam "
    "moments and the fine-grained activation offloading of row 16 are not modelled). Expert tensor parallelism from the row's "
    "ETP column: with MoE parallel folding the EP group takes consecutive ranks "
    "(deepflow.parallel.experts). The 'flex dispatcher, DeepEP backend' rows run "
    "strategy.moe_dispatcher: deepep (deepflow.network.deepep); the HybridEP backend (GB200) "
    "is costed as an NCCL all-to-all. Routing from the row's router column: forced balance "
    "(--moe-router-force-load-balancing) as moe.routing forced (imbalance 1.0); the dropless "
    "rows' learned routing (the model config's aux_loss, coefficient 1e-3) as moe.routing "
    "aux_loss, whose busiest-rank imbalance follows from Wang et al. 2024's measured MaxVio "
    "(deepflow.parallel.routing; 1.08 at EP 8, 1.23 at EP 32), not from these rows. Rows with TFLOP/s only: measured step time = Megatron-LM's model "
    "FLOPs (megatron_core_flops) / (TFLOP/s x GPUs). The 94 layers are split over the "
    "stages with the embedding and the loss counted as a layer each (the source's "
    "runtime.conf lists 96 'layers' for that reason)."
)
#: rows of the source used here: 3 (Megatron-FSDP), 4-5 (distributed optimizer, PP 32 and
#: 8), 7-14 (16K-128K context, CP 1-8), 15 (GB200 NVL72, BF16), 16-17 (GB200 NVL72, MXFP8:
#: fp8_recipe mxfp8 with fp8_param_gather) and 18 (GB300 NVL72, MXFP8). Not used: 6
#: (Qwen3-Next: gated DeltaNet linear attention, which deepflow's transformer does not build)
_MODELZOO_ROWS = tuple(str(i) for i in (3, 4, 5, *range(7, 19)))


_MODELZOO_SYSTEMS = {
    "NVIDIA H100": "dgx-h100",
    "NVIDIA GB200": "gb200-nvl72",
    "NVIDIA GB300": "gb300-nvl72",
}


def megatron_moe_modelzoo_cases() -> list[Case]:
    """Qwen3-235B-A22B with Megatron-Core on H100s, GB200s and GB300s (``_MODELZOO_ROWS``):
    the Megatron-FSDP row, the distributed-optimizer rows at PP 32 and 8, the long-context
    rows (16K-128K tokens, context parallelism 1-8), the BF16 and MXFP8 GB200 NVL72 rows
    and the MXFP8 GB300 NVL72 row of V2-S07."""
    cases = []
    for r in read_data_csv("v2", "megatron_moe_modelzoo", "qwen3_moe_throughput.csv"):
        if r["row_id"] not in _MODELZOO_ROWS:
            continue
        seq = int(r["seq_len"])
        gpus = int(r["num_accelerators"])
        gbs = int(r["global_batch_seqs"])
        tp, pp, vpp, cp, ep = (int(r[k]) for k in ("tp", "pp", "vpp_chunks", "cp", "ep"))
        fsdp = "FSDP" in r["zero_or_fsdp"]
        strategy: dict[str, Any] = {
            "dp": int(r["dp"]),
            "tp": tp,
            "pp": pp,
            "vpp": vpp,
            "cp": cp,
            "ep": ep,
            "expert_tp": int(r["expert_tensor_parallel"]),
            "sequence_parallel": r["sp"].startswith("yes"),
            "zero": 3 if fsdp else 1,
            "micro_batch_size": int(r["micro_batch_size"]),
            "framework": "megatron-core",
            # "flex dispatcher, DeepEP backend": DeepEP's kernels (deepflow.network.deepep);
            # "alltoall" and the GB200 row's HybridEP backend: an NCCL all-to-all
            "moe_dispatcher": "deepep" if "DeepEP backend" in r["moe_dispatcher"] else "alltoall",
        }
        if r["precision"].startswith("MXFP8"):
            # sbatch_benchmarking.sh PR=mxfp8: --fp8-recipe mxfp8 --fp8-param-gather
            strategy.update(precision="fp8", fp8_recipe="mxfp8", fp8_param_gather=True)
        else:
            strategy["precision"] = "bf16"
        rc = r["recompute"]
        if rc.startswith("full"):
            strategy["recompute"] = "full"
        elif rc.startswith("selective"):
            strategy["recompute"] = "selective"
            # "norm, act" (row 4): layernorm and moe_act; "layernorm, moe" (rows 7-14)
            act = "act" in rc.split(":", 1)[1] and "moe" not in rc.split(":", 1)[1]
            strategy["recompute_modules"] = ["layernorm", "moe_act" if act else "moe"]
        # the row's router column: "forced load balancing (--moe-router-force-load-
        # balancing ...)" or learned routing with the model config's aux loss
        # (--moe-router-load-balancing-type aux_loss, coefficient 1e-3)
        forced = "forced" in r["moe_router"]
        scenario = {
            "model": {
                "preset": "qwen3-235b-a22b",
                "num_layers": int(r["num_layers"]),
                "seq_len": seq,
                "moe": {"routing": "forced" if forced else "aux_loss"},
            },
            "system": {
                "preset": _MODELZOO_SYSTEMS[r["accelerator"]],
                "num_accelerators": gpus,
            },
            "strategy": strategy,
            "training": {"global_batch_size": gbs},
        }
        if r["iter_time_s"]:
            measured = float(r["iter_time_s"])
        else:
            model = scenario_from_dict(scenario).model
            flops = megatron_core_flops(model, gbs, seq)
            measured = flops / (float(r["tflops_per_accel"]) * 1e12 * gpus)
        routing = "forced balance" if forced else "dropless"
        cases.append(
            Case(
                dataset="megatron-moe-modelzoo",
                row_id=r["row_id"],
                description=(
                    f"Qwen3-235B-A22B {gpus}x {r['accelerator'].split()[-1]} seq {seq} tp{tp} "
                    f"pp{pp} vpp{vpp} cp{cp} "
                    f"ep{ep} {'FSDP' if fsdp else 'dist-opt'} {routing}"
                ),
                scenario=scenario,
                measured_step_time_s=measured,
                notes=_MODELZOO_NOTES,
            )
        )
    return cases


# --- SimuMax B200 (data/simumax_b200/b200_megatron_runs.csv) --------------------------------

_SIMUMAX_SOURCE = (
    "SimuMax B200 release v1.2 (github.com/MooreThreads/SimuMax "
    "4dcaae513ba7679d56c116a17cd4a691ec41e252), docs/b200/b200_release_v1.2_summary.json"
)
_SIMUMAX_NOTES = (
    "Measured minimum Megatron-LM iteration time (iterations 2-3) on one 8x B200 node; "
    "Megatron-LM 23e00ed with Transformer Engine 2.11, BF16, flash attention, sequence "
    "parallelism, distributed optimizer (ZeRO-1), no TP communication overlap, no "
    "recomputation (--recompute-num-layers 0), micro batch 1, mock data. Truncated model: "
    "the layer count of the case name. Llama-3 405B with 16 KV heads, as the launcher sets it. "
    "The launcher (simu_tools/megatron_scripts/scripts/run_pretrain_llama3.sh) passes neither "
    "--overlap-grad-reduce nor --overlap-param-gather (Megatron-LM defaults: off): the "
    "gradient reduce-scatter and parameter all-gather run after the backward."
)


def _simumax_launcher(r: dict[str, str], tp: int) -> dict[str, Any]:
    """The strategy keys every SimuMax B200 launcher sets alike: Megatron-LM with Transformer
    Engine, BF16, sequence parallelism with TP, the distributed optimizer, no recompute
    (``--recompute-num-layers 0``), and the data-parallel collectives after the backward:
    the launcher passes neither ``--overlap-grad-reduce`` nor ``--overlap-param-gather``
    (Megatron-LM ``arguments.py`` ``_add_distributed_args``: store_true, default False)."""
    return {
        "micro_batch_size": int(r["micro_batch_size"]),
        "recompute": "none",
        "sequence_parallel": tp > 1,
        "precision": "bf16",
        "framework": "megatron-core",
        "zero": 1,
        "overlap_grad_reduce": False,
        "overlap_param_gather": False,
    }


def simumax_b200_cases() -> list[Case]:
    """The 24 dense Llama-3 rows (sequence 4,096, TP 1-8, PP 1-2) of SimuMax's B200 runs.

    The model is truncated (70B to 12 layers, 405B to 4), so the embedding, LM head and
    cross-entropy weigh more than in the full model. The MoE, context-parallel and VPP
    preview rows of the same file are not included (``b200_megatron_runs.csv`` keeps them).
    """
    cases = []
    for r in read_data_csv("simumax_b200", "b200_megatron_runs.csv"):
        if not r["model_name"].startswith("llama3"):
            continue
        if r["seq_len"] != "4096" or (r["cp"] or "1") != "1" or (r["vpp_chunks"] or "1") != "1":
            continue
        tp, pp, dp = (int(r[k]) for k in ("tp", "pp", "dp"))
        gb = int(r["global_batch_seqs"])
        preset = "llama3-70b" if "70b" in r["model_name"] else "llama3.1-405b"
        model: dict[str, Any] = {
            "preset": preset,
            "num_layers": int(r["num_layers"]),
            "seq_len": int(r["seq_len"]),
            "num_kv_heads": int(r["num_kv_heads"]),
        }
        scenario = {
            "model": model,
            "system": {"preset": "dgx-b200", "num_accelerators": int(r["num_accelerators"])},
            "strategy": {
                "tp": tp,
                "pp": pp,
                "dp": dp,
                **_simumax_launcher(r, tp),
            },
            "training": {"global_batch_size": gb},
        }
        name = r["model_name"].split(" (")[0]
        cases.append(
            Case(
                dataset="simumax-b200",
                row_id=r["row_id"],
                description=_description(name, int(r["num_accelerators"]), tp, pp, 1, dp, 1, gb),
                scenario=scenario,
                measured_step_time_s=float(r["iter_time_s"]),
                notes=_SIMUMAX_NOTES,
            )
        )
    return cases


_SIMUMAX_MOE_NOTES = (
    "Measured minimum Megatron-LM iteration time (iterations 2-3) and peak allocated memory "
    "on one 8x B200 node; Megatron-LM 23e00ed, Transformer Engine 2.11, BF16, distributed "
    "optimizer, no recomputation, micro batch 1, mock data. DeepSeek-V2/V3-shaped model "
    "truncated to 4 layers (the first dense, three MoE) as run_pretrain_deepseekv2.sh sets "
    "it: MLA, routed experts with shared experts, all-to-all dispatcher with grouped GEMM "
    "and permute fusion, capacity factor 1 with --moe-pad-expert-input-to-capacity (every "
    "expert computes exactly its capacity: expert load 1). Expert tensor parallelism 1. "
    "The launcher passes neither --overlap-grad-reduce nor --overlap-param-gather "
    "(Megatron-LM defaults: off): the gradient reduce-scatter and parameter all-gather run "
    "after the backward."
)

#: DeepSeek-shaped models of SimuMax's MoE runs (run_pretrain_deepseekv2.sh), by case prefix
_SIMUMAX_MOE_MODELS: dict[str, dict[str, Any]] = {
    "deepseekv2": {
        "hidden_size": 5120,
        "ffn_hidden_size": 12288,
        "vocab_size": 102400,
        "moe": {"num_experts": 160, "top_k": 6, "expert_ffn_hidden_size": 1536,
                "num_shared_experts": 2},
    },
    "deepseekv3": {
        "hidden_size": 7168,
        "ffn_hidden_size": 18432,
        "vocab_size": 129280,
        "moe": {"num_experts": 256, "top_k": 8, "expert_ffn_hidden_size": 2048,
                "num_shared_experts": 1},
    },
}  # fmt: skip


def simumax_b200_moe_cases() -> list[Case]:
    """The 12 MoE rows (DeepSeek-V2 and -V3 shapes, 4 layers, EP 4-8, PP 1-2) of SimuMax's
    B200 runs, with step time and peak allocated memory."""
    cases = []
    for r in read_data_csv("simumax_b200", "b200_megatron_runs.csv"):
        prefix = r["model_name"].split()[0]
        if prefix not in _SIMUMAX_MOE_MODELS:
            continue
        shape = _SIMUMAX_MOE_MODELS[prefix]
        heads = int(r["num_attention_heads"])
        model = {
            "name": f"{prefix}-l{r['num_layers']}",
            "num_layers": int(r["num_layers"]),
            "num_attention_heads": heads,
            "ffn_type": "swiglu",
            "seq_len": int(r["seq_len"]),
            **shape,
            "moe": {
                **shape["moe"],
                "first_dense_layers": int(r["moe_dense_layers"]),
                "capacity_factor": float(r["moe_capacity_factor"].split()[0]),
                "pad_to_capacity": True,
            },
            # MLA as the launcher sets it (q_lora_rank 1536, kv_lora_rank 512, qk_head_dim
            # 128, qk_pos_emb_head_dim 64, v_head_dim 128)
            "mla": {
                "q_lora_rank": 1536,
                "kv_lora_rank": 512,
                "qk_nope_head_dim": 128,
                "qk_rope_head_dim": 64,
                "v_head_dim": 128,
            },
            "sources": [_SIMUMAX_SOURCE, r["source_url"].split(" ; ")[-1]],
        }
        tp, pp, dp, ep = (int(r[k]) for k in ("tp", "pp", "dp", "ep"))
        gb = int(r["global_batch_seqs"])
        scenario = {
            "model": model,
            "system": {"preset": "dgx-b200", "num_accelerators": int(r["num_accelerators"])},
            "strategy": {
                "tp": tp,
                "pp": pp,
                "dp": dp,
                "ep": ep,
                "expert_tp": int(r["expert_tensor_parallel"]),
                **_simumax_launcher(r, tp),
            },
            "training": {"global_batch_size": gb},
        }
        cases.append(
            Case(
                dataset="simumax-b200-moe",
                row_id=r["row_id"],
                description=_description(
                    f"{prefix}-l{r['num_layers']}",
                    int(r["num_accelerators"]),
                    tp,
                    pp,
                    1,
                    dp,
                    1,
                    gb,
                )
                + f" ep{ep}",
                scenario=scenario,
                measured_step_time_s=float(r["iter_time_s"]),
                notes=_SIMUMAX_MOE_NOTES,
                measured_peak_memory_bytes=float(r["peak_mem_alloc_gib"]) * 2**30,
            )
        )
    return cases


#: Data-set name -> loader, in the order reports list them.
DATASETS: dict[str, Callable[[], list[Case]]] = {
    "megatron-2021": megatron_2021_cases,
    "megatron-2020": megatron_2020_cases,
    "vtrain-multi": vtrain_multi_cases,
    "vtrain-single": vtrain_single_cases,
    "fms-fsdp": fms_fsdp_cases,
    "megatron-moe-modelzoo": megatron_moe_modelzoo_cases,
    "simumax-b200": simumax_b200_cases,
    "simumax-b200-moe": simumax_b200_moe_cases,
}
