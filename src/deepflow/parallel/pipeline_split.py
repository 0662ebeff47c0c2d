"""The pipeline split: which transformer layers each pipeline stage and virtual chunk holds.

This is the one definition of the split; the closed-form estimator, the simulator's lowering
and the ASTRA-sim export all call :func:`pipeline_split`.

Layout. With ``pp`` stages and ``vpp`` virtual chunks per stage there are ``C = pp * vpp``
chunks; chunk ``c`` runs on stage ``c mod pp`` and the chunks hold consecutive layers in
model order (Narayanan et al. 2021, arXiv 2104.04473, sec. 2.2.2; Megatron-Core's
``get_transformer_layer_offset``, ``megatron/core/transformer/transformer_layer.py``:
``offset = vp_stage * total_virtual_chunks + pp_rank * num_layers_per_virtual_rank``).
The embedding runs before the first layer of chunk 0 (stage 0), the final norm, LM head and
loss after the last layer of chunk ``C - 1`` (stage ``pp - 1``).

Default rule, for any ``pp`` and ``vpp`` (``L = num_layers``):

1. ``C`` divides ``L``: every chunk holds ``L / C`` layers. This is Megatron-Core's default
   (``get_num_layers_to_build`` in ``megatron/core/transformer/transformer_block.py``:
   ``num_layers // pipeline_model_parallel_size``, then ``// vp_size``), and deepflow's split
   before uneven pipelines were accepted, so those results do not change.
2. Otherwise the embedding and the loss count as one layer each, as Megatron-Core's
   ``account_for_embedding_in_pipeline_split`` and ``account_for_loss_in_pipeline_split``
   do (``transformer_config.py``; ``get_num_layers_to_build`` adds one to ``num_layers`` for
   each, splits, and builds one layer fewer in the first chunk of the first stage and in the
   last chunk of the last stage). The ``U = L + 2`` layer-equivalents go to the chunks as
   evenly as possible: every chunk gets ``U // C``, and the ``U mod C`` left over go one each
   to the *last* chunks (tie-break: under 1F1B the first stages hold the most micro-batches
   in flight, Narayanan et al. 2021, sec. 2.2.1, so the lighter chunks come first). Chunk 0
   then gives one to the embedding and chunk ``C - 1`` one to the loss. Megatron-Core
   requires ``pp`` (and ``vpp``) to divide ``U`` here; this rule is the same split where it
   does and extends it where it does not. If ``C > U`` no split gives every chunk a layer,
   an embedding or a loss; the layers then go one each to the chunks just before the last
   (the feasibility rule ``pp-layers`` refuses such a pipeline).

   Example: Llama 3.1 405B, 126 layers on 16 stages: ``U = 128``, 8 per stage, so stages 0
   and 15 hold 7 layers and stages 1-14 hold 8, the split Meta trained with ("we reduce one
   Transformer layer each from the first and the last stages", Llama Team 2024, arXiv
   2407.21783, sec. 3.3.2). DeepSeek-V3, 61 layers on 16 stages: ``U = 63``, stage 0 holds
   2 layers and the embedding, stages 1-14 hold 4, stage 15 holds 3 and the loss.

Explicit split (``strategy.stage_layers``): ``C`` entries give each chunk's layers; ``pp``
entries give each stage's, spread over its ``vpp`` chunks by the same rule (as evenly as
possible, the extra layers to the later chunks).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from deepflow.specs.model import ModelSpec
from deepflow.specs.strategy import check_stage_layers

__all__ = ["PipelineSplit", "SplitRule", "default_chunk_sizes", "pipeline_split"]


class SplitRule(str, Enum):
    """Which rule placed the layers."""

    EVEN = "even"
    """``pp * vpp`` divides ``num_layers``: the same number of layers in every chunk."""
    EMBEDDING_AND_LOSS = "embedding-and-loss"
    """Embedding and loss count as a layer each, the rest as even as possible."""
    EXPLICIT = "explicit"
    """Given by ``strategy.stage_layers``."""


@dataclass(frozen=True)
class PipelineSplit:
    """The layers of every stage and virtual chunk.

    ``chunks[c]`` is the range of layer indices (0-based, model order) of virtual chunk
    ``c``, which runs on stage ``c mod pp``. ``dense`` and ``moe`` count each stage's dense
    and mixture-of-experts layers.
    """

    pp: int
    vpp: int
    rule: SplitRule
    chunks: tuple[range, ...]
    dense: tuple[int, ...]
    moe: tuple[int, ...]

    @property
    def num_chunks(self) -> int:
        return self.pp * self.vpp

    def stage_of(self, chunk: int) -> int:
        """The stage that runs virtual chunk ``chunk``."""
        return chunk % self.pp

    @property
    def embedding_stage(self) -> int:
        """The stage that runs the embedding (the one of chunk 0)."""
        return self.stage_of(0)

    @property
    def loss_stage(self) -> int:
        """The stage that runs the final norm, LM head and loss (the one of the last chunk)."""
        return self.stage_of(self.num_chunks - 1)

    @property
    def chunk_sizes(self) -> tuple[int, ...]:
        """Layers per virtual chunk."""
        return tuple(len(r) for r in self.chunks)

    @property
    def stage_sizes(self) -> tuple[int, ...]:
        """Layers per stage."""
        return tuple(d + m for d, m in zip(self.dense, self.moe, strict=True))

    def stage_layers(self, stage: int) -> tuple[int, ...]:
        """Layer indices of ``stage``, in the order its chunks run them."""
        return tuple(i for c in range(stage, self.num_chunks, self.pp) for i in self.chunks[c])

    @property
    def layer_equivalents(self) -> tuple[int, ...]:
        """Layers per stage, with the embedding and the loss counted as one layer each (the
        measure the default rule balances)."""
        out = list(self.stage_sizes)
        out[self.embedding_stage] += 1
        out[self.loss_stage] += 1
        return tuple(out)


def default_chunk_sizes(num_layers: int, chunks: int) -> tuple[tuple[int, ...], SplitRule]:
    """Layers per virtual chunk under the default rule (module docstring), and the rule."""
    if num_layers % chunks == 0:
        return (num_layers // chunks,) * chunks, SplitRule.EVEN
    units = num_layers + 2  # the embedding and the loss count as one layer each
    if units >= chunks:
        base, extra = divmod(units, chunks)
        sizes = [base + (1 if c >= chunks - extra else 0) for c in range(chunks)]
        sizes[0] -= 1  # the embedding's share
        sizes[-1] -= 1  # the loss's share
    else:  # fewer layers than chunks: one each to the chunks just before the last
        sizes = [0] * chunks
        for c in range(chunks - 1 - num_layers, chunks - 1):
            sizes[c] = 1
    return tuple(sizes), SplitRule.EMBEDDING_AND_LOSS


def _spread(total: int, parts: int) -> list[int]:
    """``total`` over ``parts`` as evenly as possible, the extra ones to the later parts."""
    base, extra = divmod(total, parts)
    return [base + (1 if k >= parts - extra else 0) for k in range(parts)]


@lru_cache(maxsize=4096)
def pipeline_split(
    model: ModelSpec, pp: int, vpp: int = 1, stage_layers: tuple[int, ...] | None = None
) -> PipelineSplit:
    """The layers of every stage and virtual chunk of ``model`` on ``pp`` stages with
    ``vpp`` chunks each: the default rule (module docstring) or the explicit
    ``stage_layers`` (``pp`` or ``pp * vpp`` entries adding up to ``num_layers``; anything
    else is a :class:`~deepflow.errors.ConfigError` naming ``strategy.stage_layers``)."""
    assert pp >= 1 and vpp >= 1
    n_chunks = pp * vpp
    if stage_layers is None:
        sizes, rule = default_chunk_sizes(model.num_layers, n_chunks)
    else:
        stage_layers = tuple(int(x) for x in stage_layers)
        check_stage_layers(stage_layers, pp, vpp, model.num_layers)
        rule = SplitRule.EXPLICIT
        if len(stage_layers) == n_chunks:
            sizes = stage_layers
        else:
            per_stage = [_spread(n, vpp) for n in stage_layers]
            sizes = tuple(per_stage[c % pp][c // pp] for c in range(n_chunks))
    chunks, start = [], 0
    for size in sizes:
        chunks.append(range(start, start + size))
        start += size
    assert start == model.num_layers
    dense, moe = [0] * pp, [0] * pp
    for c, layers in enumerate(chunks):
        for layer in layers:
            if model.is_moe_layer(layer):
                moe[c % pp] += 1
            else:
                dense[c % pp] += 1
    return PipelineSplit(pp, vpp, rule, tuple(chunks), tuple(dense), tuple(moe))
