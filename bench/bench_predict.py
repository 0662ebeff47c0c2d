"""One-at-a-time predictions per second on one core (``deepflow.predict``), as an optimizer
loop calls it: a different strategy each call, so nothing is served from a result cache.

GPT-3 175B on 1,024 A100 80GB (examples/gpt3-175b-a100.yaml) over a cycle of 120 distinct
strategies (tp, pp, micro-batch, recompute); CPU time of this process, so that other load
on the machine does not count. The layer costs, and apart from them the embedding and
head costs, of a call are reused by later calls that read the same inputs
(:mod:`deepflow.estimate.memo`: here tp, micro-batch and recompute, 24 combinations, each
computed once and counted in the time), and so are the stage state and the step-level
data-parallel and optimizer terms of a mesh and split (here tp and pp, 20 combinations);
``--cold`` empties every memo before every call
(:func:`deepflow.estimate.evaluate.clear_memos`), the rate without any reuse.

    python bench/bench_predict.py [--calls N] [--cold | --warm]

``--warm`` fills the memos before the clock starts (one pass over the 120 strategies):
the rate of the evaluator itself, without the memo misses.

Measured on the 2-core development machine, 2026-12-05 (``taskset -c 0``, other jobs
running on the machine): 1,748-1,863 predictions/s (0.54-0.57 ms each) in three runs,
against 1,473-1,486 for the evaluator before the second round of one-strategy shortcuts
(the data-parallel sync of one strategy on NumPy scalars, :mod:`deepflow.network.xp`;
feasibility rules on the strategy's scalars; split arrays and activations in flight kept
per pipeline split; layer-cost sums computed once per memoized object) in the same runs;
``--cold`` 371-376/s against 366-377/s. Before the first round (placements per mesh,
tables per system object, cheaper memo keys, rules that stop at the first violation)
it was 1,081-1,105/s. With the training loop's host costs of the embedding and head
(their memo key now reads the data-parallel groups: 40 edge-cost computations over the 120
strategies), the same command gave 1,429-1,581/s (three runs, same day).

Third round (2026-12-05, ``taskset -c 0``, other jobs on the machine, this command and
the evaluator of the commit before the round run one after the other, three times):
1,260-1,315/s (0.76-0.79 ms each) against 1,182-1,248/s; ``--warm`` 1,819-1,927/s
(0.52-0.55 ms) against 1,669-1,723/s; ``--cold`` 175/s against 151/s (one run each; a
second pair gave 204 and 207/s). The round: the per-strategy values of the pipeline-split
loop and the step-level data-parallel terms of one strategy on NumPy scalars
(``scalar_groups``, ``step_sync``, ``sync_time``, ``param_gather_exposed`` through
:mod:`deepflow.network.xp`), memo keys that keep the fingerprint of a mesh's groups per
object and fingerprint a path once for both memos. The 5,000/s an optimizer loop would
like is not reached.

Fourth round (2026-12-06, ``taskset -c 0``, a fitting job on the other core; best of four
runs each, this command and the evaluator of the commit before the round run
alternately): 1,721/s (0.58 ms) against 1,408/s; ``--warm`` 2,191/s (0.46 ms) against
1,978/s; ``--cold --calls 240`` 255-259/s against 203-206/s (two runs each). The round:
the loss all-reduce reads the data-parallel groups only where a loop averages the loss
(8 edge-cost computations instead of 40), the stage parts and the stage sums (FLOPs,
parameters, saved activations) each in one broadcast over rows kept per memoized cost,
ZeRO-3 exposure terms that return at once without ZeRO-3, and a GEMM of one strategy
evaluates its six candidate tiles along one broadcast axis (``gemm_terms``; the layer
costs a memo miss computes). After it, the
median time of each section of a warm ``evaluate`` (``time.perf_counter`` between its
statements, 1,200 calls): the pipeline-split loop 167 us (the stage state 34 us, the
pipeline time 26 us, the rest 5-10 us per statement), the feasibility rules 48 us, the
memo lookups 43 us, ``Env.build`` 32 us, the step-level data-parallel sync 37 us; outside
``evaluate``, ``StrategyBatch.from_specs`` 25 us. No one part is the bulk: 5,000/s needs
the one-strategy evaluation written with far fewer NumPy operations, not a shortcut in
one place. Before this round: about 30 % was the memo misses (the default
run against ``--warm``: 24 layer-cost and 40 edge-cost computations, the head's cost
reading the data-parallel groups through the loss all-reduce). In ``python -m cProfile
-s cumulative bench/bench_predict.py --calls 1200`` (1.28 s in ``predict``), the memo
calls take 0.34 s (misses included), the memo keys 0.10 s, the feasibility rules,
``StrategyBatch.from_specs`` and ``Env.build`` 0.07-0.08 s each, and ``evaluate``'s own
lines 0.24 s: NumPy's fixed cost per operation on the ``(stages, 1)`` arrays of the
pipeline split and on one-element arrays, spread over some hundred lines; the rest is
spread over the sharding, pipeline and collective helpers.

Fifth round (2026-12-06, ``taskset -c 0``, other jobs on the machine; best of four runs
each, this command and the evaluator of the commit before the round run alternately):
2,463/s (0.41 ms) against 1,659/s; ``--calls 1200`` 2,827-2,912/s against 1,869-1,875/s;
``--warm --calls 1200`` 3,250-3,347/s (0.30 ms) against 2,136-2,150/s; ``--cold --calls
240`` 330/s against 247/s. The round, every result bit-identical (``deepflow validate
--csv`` and the predictions of every example over 120 strategies compared before and
after):

* one strategy's entry: ``StrategyBatch.from_specs`` of one spec packs its fields and
  strides in two arrays, and ``Env.build``, the placements' memo key and the feasibility
  rules read the strategy's NumPy scalars (``StrategyBatch.row``, built once per batch);
* reuse below the layer costs (:class:`deepflow.estimate.memo.ArgsMemo`): the stage
  state and the step-level data-parallel sync and optimizer time of one strategy kept by
  the values of their arguments, the same for every micro-batch size, recomputation and
  schedule of a mesh and split; the environment-only step inputs kept by what they read,
  beside the part costs; a cost's time parts as full rows of the stage parts, kept per
  memoized cost;
* cheaper memo misses: the GEMMs of an op (forward, data and weight gradients) and the
  unfused attention's six in one call with the shapes on a leading axis, GEMM curve
  parameters kept per precision code, a recorder that keeps each value it read;
* fewer operations: one pipeline split's outputs taken as they are, the ZeRO-3 terms'
  zeros computed once without ZeRO-3, ``ndarray.any`` for ``np.any``, one element's
  rates (tokens/s, MFU, HFU) on NumPy scalars.

After it, the median time of each part of a warm call (``time.perf_counter`` marks in
``evaluate``, 1,200 calls): ``from_specs`` and the call 20 us, ``Env.build`` 26 us, the
feasibility rules 17 us, the part costs' memo lookup 35 us and the step inputs' 6 us, the
pipeline-split loop 129 us (the stage parts 17 us, the pipeline time 20 us, the stage
state's memo 14 us, the stage sums 11 us, the forward and weight-gradient shares 14 us),
the step-level terms 38 us, the result and ``prediction_at`` 27 us. Still short of
5,000/s: what remains is NumPy's fixed cost per operation on one-element and
``(stages, 1)`` arrays, spread over the evaluator with no part a large share.

Sixth round, all three parts below together (2026-12-06, ``taskset -c 0``, other jobs
on the machine; best of four runs each, this command and the evaluator of ba8afec run
alternately): 3,352/s (0.30 ms) against 2,482/s; ``--calls 1200`` 3,607/s against
2,748/s; ``--warm --calls 1200`` 4,142/s (0.24 ms) against 3,194/s; ``--cold --calls 240``
504/s against 317/s. Every result bit-identical (``deepflow validate --csv``, the
predictions of every example over 120 strategies, and of GPT-3 175B and DeepSeek-V3 over
ZeRO 1 and 3, both overlap flags, the four schedules and two recompute modes, one at a
time and as one batch, compared before and after). The median time of each part of a warm
call after it (``time.perf_counter`` marks in ``evaluate``, 1,200 calls): the call and
``from_specs`` 19 us, ``Env.build``, the feasibility rules and the memo lookups 61 us, the
pipeline-split loop about 92 us (the pipeline time 20 us, the rest 2-12 us per
statement), the step-level terms 33 us, the result and ``prediction_at`` 24 us.

The evaluator's loop: a stage's time parts, STAGE_SUMS quantities and forward time come
from one table per kind of unit (dense layer, MoE layer, the ZeRO-3 chain ends, embedding,
head; ``_stage_table``, kept per memoized cost) and one combination of them
(``_stage_combination``), every row in one broadcast for one strategy; each strategy's
values on its critical or peak stage by a basic index for one strategy (``_on_stage``).

The memo keys (the same commands, another set of alternating runs): 2,465/s against
2,221/s; ``--calls 1200`` 2,871/s against 2,545/s; ``--warm --calls 1200`` 3,086/s
against 2,782/s (3,607 against 3,259/s in an earlier, quieter set); ``--cold --calls
240`` 291/s against 274/s, within the noise. Memo keys
of small integer codes, one per distinct fingerprint (:func:`deepflow.estimate.memo.code`),
instead of tuples of nested fingerprints hashed again on every lookup; a packed batch of
one keyed on the Python values of the fields read; scalars, empty dicts, enums and
frozen objects given their codes without a fingerprint. Median time of each memo lookup
of a warm call (``python bench/bench_memo.py``, same machine and load, best of two runs):
the part costs 27.1 -> 13.6 us, the step inputs 5.5 -> 3.5 us, the stage state 9.3 ->
4.7 us, the step-level times 7.3 -> 4.9 us; 49 -> 27 us in all.

The memo misses (the same commands, another set of alternating runs): ``--cold --calls 240`` 531/s against 315/s; 2,710/s against 2,368/s;
``--calls 1200`` 3,058/s against 2,774/s; ``--warm --calls 1200`` 3,302/s against 3,233/s
(the round does not touch a warm call). One miss's layer costs of GPT-3 175B
(``layer_costs`` on a one-strategy ``Env``, best of five passes over 48 strategies) take
0.50 ms against 1.30 ms, its embedding and head costs 0.35 ms against 0.54 ms; DeepSeek-V3's
(examples/deepseek-v3-2048-h800.yaml, uneven expert rows) 2.2 ms against 12.9 ms and
2.8 ms against 13.9 ms (its head with the multi-token-prediction layers costs the layers
again). Their changes:

* a layer's GEMMs that share their curve's inputs in one ``gemm_time`` call with the
  shapes on a leading axis (``stacked_gemm_times``; the LM head's three too), the candidate
  tiles along a broadcast axis up to 64 shapes and for uneven expert rows (the expected
  row tiles of every candidate in one call);
* a layer's element-wise ops in one ``memory_time`` call over an op axis
  (``elementwise_costs``);
* one strategy's collectives on NumPy scalars inside ``collective_time`` (the tensor- and
  expert-parallel pairs, the embedding's and the loss's);
* the terms of features no strategy of the batch uses not costed (the other attention
  kernel, the other form of a tensor-parallel pair, the QKV gather, autocast casts,
  biases outside fused epilogues, FP8 quantization, the ring-attention exchange).

Still short of 5,000/s (0.2 ms a call) after the sixth round: no part of a warm call is
the bulk; what remains is NumPy's fixed cost per operation on one-element and
``(stages, 1)`` arrays (the pipeline time's schedule checks, the stage state and
activations, the step-level terms, ``Env.build`` and the rules), and in the default run
the layer costs of the 24 memo misses (about 0.5 ms each).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import deepflow
from deepflow.estimate.evaluate import EDGE_COSTS, PART_COSTS, clear_memos
from deepflow.specs import Scenario

ROOT = Path(__file__).parents[1]


def strategies(scenario: Scenario, count: int) -> list[Scenario]:
    """``count`` scenarios with distinct strategies (dp fills the cluster)."""
    out = []
    n = scenario.system.num_accelerators
    grid = itertools.product((1, 2, 4, 8), (1, 2, 4, 8, 16), (1, 2), ("none", "selective", "full"))
    for tp, pp, mbs, rc in itertools.islice(itertools.cycle(grid), count):
        strategy = scenario.strategy.replace(
            tp=tp, pp=pp, dp=n // (tp * pp), micro_batch_size=mbs, recompute=rc
        )
        out.append(Scenario.model_construct(**{**dict(scenario), "strategy": strategy}))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=600)
    parser.add_argument("--cold", action="store_true", help="empty the memo before each call")
    parser.add_argument(
        "--warm", action="store_true", help="fill the memos first (a pass over the strategies)"
    )
    args = parser.parse_args()
    base = deepflow.load_scenario(ROOT / "examples" / "gpt3-175b-a100.yaml")
    points = strategies(base, args.calls)
    deepflow.predict(base)  # imports and one-time tables
    clear_memos()
    if args.warm:  # every layer and edge cost computed before the clock starts
        for scenario in points[:120]:
            deepflow.predict(scenario)
    start = time.process_time()
    for scenario in points:
        if args.cold:
            clear_memos()
        deepflow.predict(scenario)
    elapsed = time.process_time() - start
    reuse = (
        "no reuse"
        if args.cold
        else f"{PART_COSTS.misses} layer-cost and {EDGE_COSTS.misses} edge-cost computations"
        + (" before the clock" if args.warm else "")
    )
    print(
        f"deepflow.predict: {args.calls / elapsed:,.0f} predictions/s on one core "
        f"({elapsed / args.calls * 1e3:.2f} ms each, {args.calls} calls over "
        f"{len(set(p.strategy for p in points))} distinct strategies, {reuse})"
    )


if __name__ == "__main__":
    main()
