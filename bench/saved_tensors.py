"""List what autograd keeps for backward in a Hugging Face training forward (AMP bf16).

The ``hf-trainer`` framework profile (``specs/data/frameworks/hf-trainer.yaml``) states,
per operator, the tensors that eager PyTorch saves for backward under
``torch.autocast(dtype=torch.bfloat16)`` over fp32 parameters, read from the transformers
modeling code and PyTorch's derivative formulas. This script checks that reading on the
real dispatch: it builds a small Llama- and GPT-2-architecture model from a config (random
weights, nothing downloaded, SDPA attention, train mode with each config's default
dropout), runs one forward with the causal-LM loss under autocast, walks the autograd
graph from the loss and prints every saved tensor of every backward node (``_saved_*``
attributes): node, dtype, shape, bytes per token, and whether its storage was already
counted (a view of another saved tensor) or is an fp32 parameter.

CUDA and CPU differ (autocast's op lists, the SDPA backends, the dropout mask dtype), so
the profile's numbers come from a CUDA run::

    python3 bench/saved_tensors.py --device cuda --out OUT

which also writes ``OUT/saved_tensors_<family>.json``.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path
from typing import Any


def build(family: str, device: str, seq: int) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    if family == "llama":  # head_dim 128, GQA 4:1, SwiGLU
        config = LlamaConfig(
            hidden_size=512,
            intermediate_size=1376,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            vocab_size=1000,
            max_position_embeddings=max(seq, 2048),
            tie_word_embeddings=False,
        )
    else:  # head_dim 128, GELU (gelu_new) 4h, tied embeddings, dropout 0.1
        config = GPT2Config(
            n_embd=512,
            n_layer=2,
            n_head=4,
            n_inner=2048,
            vocab_size=1000,
            n_positions=seq,
            tie_word_embeddings=True,
            bos_token_id=999,
            eos_token_id=999,
        )
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    return model.float().train()


def inventory(family: str, device: str, batch: int, seq: int) -> list[dict[str, Any]]:
    """One row per saved tensor of the autograd graph of one forward + loss."""
    import torch

    torch.manual_seed(0)
    model = build(family, device, seq)
    params = {p.untyped_storage().data_ptr(): n for n, p in model.named_parameters()}
    ids = torch.randint(0, model.config.vocab_size, (batch, seq), device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        loss = model(input_ids=ids, labels=ids).loss
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    stack, visited = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in visited:
            continue
        visited.add(node)
        for attr in sorted(a for a in dir(node) if a.startswith("_saved_")):
            try:
                value = getattr(node, attr)
            except Exception:
                continue
            for t in value if isinstance(value, (tuple, list)) else [value]:
                if not isinstance(t, torch.Tensor) or t.numel() <= 1:
                    continue
                storage = t.untyped_storage()
                key = storage.data_ptr()
                rows.append(
                    {
                        "node": node.name(),
                        "attr": attr,
                        "dtype": str(t.dtype).replace("torch.", ""),
                        "shape": list(t.shape),
                        "storage_bytes_per_token": storage.nbytes() / (batch * seq),
                        "duplicate": key in seen,
                        "param": params.get(key, ""),
                    }
                )
                seen.add(key)
        stack.extend(n for n, _ in node.next_functions)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch
    import transformers

    env = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
    }
    print(json.dumps(env))
    for family in ("llama", "gpt2"):
        rows = inventory(family, args.device, args.batch, args.seq)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            path = args.out / f"saved_tensors_{family}.json"
            path.write_text(json.dumps({"environment": env, "rows": rows}, indent=1))
        groups: dict[tuple[str, ...], list[float]] = collections.defaultdict(list)
        for r in rows:
            kind = "dup" if r["duplicate"] else ("param" if r["param"] else "new")
            key = (r["node"], r["attr"], r["dtype"], "x".join(map(str, r["shape"][-2:])), kind)
            groups[key].append(r["storage_bytes_per_token"])
        print(f"== {family} (batch {args.batch}, seq {args.seq}): count, bytes/token each")
        for key, values in sorted(groups.items()):
            print(f"  {len(values):3d} x {values[0]:9.1f}  " + "  ".join(key))
        total = sum(
            r["storage_bytes_per_token"] for r in rows if not r["duplicate"] and not r["param"]
        )
        print(f"  unique non-parameter storage, bytes/token: {total:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
