"""Recurrent networks as unrolled operator graphs: RNNLM, an RNN text classifier (RNNTC),
NMT (encoder-decoder LSTM with attention), and DeepFlow's LSTM language model.

FlexFlow (Jia et al. 2019, arXiv 1807.05358, sec. 8) unrolls a recurrent network over time
so that operation parallelism can place *layers* and *time steps* on different devices,
the placement GNMT uses by hand (Wu et al. 2016, arXiv 1609.08144, sec. 3). Here the
sequence is cut into chunks of ``chunk`` time steps; each (layer, chunk) is one LSTM op
that runs its steps one after another and reads two tensors: the previous layer's outputs
for the same steps, and the last ``(h, c)`` of the same layer's previous chunk. Chunks of
one layer share that layer's weights (``Op.weight``), so their gradients are synchronized
together, once.

An LSTM step is one GEMM ``[B, D_in + H] x [D_in + H, 4H]`` for the four gates plus the
cell's element-wise arithmetic, which DeepFlow counts as ``5 B H`` FLOPs and ``13 B H``
element reads and writes (Ardalani, Pal and Gupta, "DeepFlow", arXiv 2211.03309; reference
notes, sec. 3). LSTM ops split on the sample dimension only, as in FlexFlow's simulator;
embeddings split on the sample, the time steps and the embedding width (parameter); the
projection onto the vocabulary splits on the sample, the time steps and the vocabulary
(parameter), which is how FlexFlow's NMT strategy splits its softmax layer (sec. 8.4).
"""

from __future__ import annotations

from dataclasses import replace

from deepflow.workload.opgraph import (
    Dim,
    DimKind,
    Edge,
    Gemm,
    GemmAxis,
    GraphBuilder,
    OpGraph,
    OpKind,
    gemm_op,
    memory_op,
)

__all__ = ["lstm_lm", "nmt", "rnnlm", "rnntc"]

SEQ = ("sample", "seq")


def _seq_dims(batch: int, steps: int, width: int, kind: DimKind, *, split_seq: bool = True):
    axis_w = GemmAxis.N if kind is DimKind.PARAMETER else GemmAxis.NONE
    return (
        Dim("sample", batch, DimKind.SAMPLE, GemmAxis.M),
        Dim("seq", steps, DimKind.ATTRIBUTE, GemmAxis.M, splittable=split_seq),
        Dim("hidden", width, kind, axis_w),
    )


class _Rnn:
    def __init__(self, name: str, batch: int, source: str) -> None:
        self.g = GraphBuilder(name, batch, source)
        self.b = batch

    def embedding(self, name: str, steps: int, vocab: int, width: int, weight: str) -> int:
        """A table lookup: gather ``B x steps`` rows of ``width``; backward scatters them
        into the (dense) gradient of the table."""
        n = self.b * steps * width
        return self.g.add(
            memory_op(
                name,
                OpKind.EMBEDDING,
                _seq_dims(self.b, steps, width, DimKind.PARAMETER),
                (),
                2.0 * n,
                params=vocab * width,
                weight=weight,
                stage=0,
                profile=(("batch", self.b), ("steps", steps), ("vocab", vocab), ("width", width)),
            )
        )

    def lstm(
        self,
        name: str,
        x: int,
        prev: int | None,
        steps: int,
        d_in: int,
        hidden: int,
        weight: str,
        stage: int,
        extra: tuple[Edge, ...] = (),
    ) -> int:
        inputs = (Edge(x, aligned=SEQ),)
        if prev is not None:
            # the last step's (h, c): 2 of the previous chunk's ``steps`` output rows
            inputs += (Edge(prev, fraction=2.0 / steps, aligned=("sample",)),)
        dims = (
            Dim("sample", self.b, DimKind.SAMPLE, GemmAxis.M),
            Dim("seq", steps, DimKind.ATTRIBUTE, GemmAxis.NONE, splittable=False),
            Dim("hidden", hidden, DimKind.PARAMETER, GemmAxis.N, splittable=False),
        )
        op = gemm_op(
            name,
            OpKind.LSTM,
            dims,
            inputs + extra,
            Gemm(self.b, 4 * hidden, d_in + hidden),
            4 * hidden * (d_in + hidden) + 8 * hidden,  # W_ih, W_hh and both biases
            mem=13.0 * self.b * hidden,
            steps=steps,
            weight=weight,
            stage=stage,
            profile=(
                ("batch", self.b),
                ("input_size", d_in),
                ("hidden_size", hidden),
                ("steps", steps),
            ),
        )
        # the cell's element-wise FLOPs (5 B H per step) are counted with the GEMM's
        op = replace(
            op,
            flops_fwd=op.flops_fwd + 5.0 * self.b * hidden * steps,
            flops_bwd=op.flops_bwd + 10.0 * self.b * hidden * steps,
        )
        return self.g.add(op)

    def projection(
        self,
        name: str,
        xs: tuple[int, ...],
        steps: int,
        d_in: int,
        out: int,
        weight: str,
        stage: int,
    ) -> int:
        """A fully connected layer applied at every step (``m = B x steps``)."""
        return self.g.add(
            gemm_op(
                name,
                OpKind.LINEAR,
                _seq_dims(self.b, steps, out, DimKind.PARAMETER),
                tuple(Edge(x, aligned=SEQ) for x in xs),
                Gemm(self.b * steps, out, d_in),
                d_in * out + out,
                mem=2.0 * self.b * steps * out,
                weight=weight,
                stage=stage,
                profile=(
                    ("rows", self.b * steps),
                    ("in_features", d_in),
                    ("out_features", out),
                    ("relu", False),
                ),
            )
        )

    def softmax(self, name: str, x: int, steps: int, classes: int, stage: int) -> int:
        n = self.b * steps * classes
        return self.g.add(
            memory_op(
                name,
                OpKind.SOFTMAX,
                _seq_dims(self.b, steps, classes, DimKind.ATTRIBUTE),
                (Edge(x, aligned=("sample", "seq", "hidden")),),
                3.0 * n,
                flops=5.0 * n,
                stage=stage,
                profile=(("rows", self.b * steps), ("cols", classes)),
            )
        )

    def attention(
        self,
        name: str,
        query: int,
        memory: tuple[int, ...],
        steps: int,
        src_len: int,
        hidden: int,
        stage: int,
    ) -> int:
        """Dot-product attention of ``steps`` decoder states over ``src_len`` encoder states
        (Luong, Pham, Manning 2015, arXiv 1508.04025, "global attention", dot score): the
        scores ``Q K^T`` and the context ``A V`` are two batched GEMMs of ``2 steps src_len
        H`` FLOPs per sample each, written as one with ``k = 2H``."""
        dims = (
            Dim("sample", self.b, DimKind.SAMPLE, GemmAxis.BATCH),
            Dim("seq", steps, DimKind.ATTRIBUTE, GemmAxis.M),
            Dim("hidden", hidden, DimKind.ATTRIBUTE, GemmAxis.NONE, splittable=False),
        )
        inputs = (Edge(query, aligned=SEQ), *(Edge(m, aligned=("sample",)) for m in memory))
        return self.g.add(
            gemm_op(
                name,
                OpKind.ATTENTION,
                dims,
                inputs,
                Gemm(steps, src_len, 2 * hidden, self.b),
                0,
                mem=3.0 * self.b * steps * src_len,  # softmax over the scores
                stage=stage,
                profile=(
                    ("batch", self.b),
                    ("steps", steps),
                    ("src_len", src_len),
                    ("hidden", hidden),
                ),
            )
        )


def _check(seq_len: int, chunk: int) -> int:
    if chunk < 1 or seq_len % chunk:
        raise ValueError(f"chunk={chunk} must divide seq_len={seq_len}")
    return seq_len // chunk


def _language_model(
    name: str,
    source: str,
    batch: int,
    seq_len: int,
    hidden: int,
    vocab: int,
    layers: int,
    chunk: int,
    embed: int,
) -> OpGraph:
    chunks = _check(seq_len, chunk)
    net = _Rnn(name, batch, source)
    prev: list[int | None] = [None] * layers
    for c in range(chunks):
        x = net.embedding(f"embed.{c}", chunk, vocab, embed, "embed")
        d_in = embed
        for layer in range(layers):
            x = net.lstm(
                f"lstm{layer}.{c}", x, prev[layer], chunk, d_in, hidden, f"lstm{layer}", layer + 1
            )
            prev[layer] = x
            d_in = hidden
        y = net.projection(f"proj.{c}", (x,), chunk, hidden, vocab, "proj", layers + 1)
        net.softmax(f"softmax.{c}", y, chunk, vocab, layers + 1)
    return net.g.build()


def rnnlm(
    batch: int = 64,
    seq_len: int = 35,
    hidden: int = 1500,
    vocab: int = 10000,
    layers: int = 2,
    chunk: int = 5,
) -> OpGraph:
    """The recurrent language model of FlexFlow's evaluation (RNNLM), with the shapes of the
    large model of Zaremba, Sutskever, Vinyals, "Recurrent Neural Network Regularization"
    (arXiv 1409.2329, sec. 4.1): 2 LSTM layers of 1500 units, 35 unrolled steps, a 10,000
    word vocabulary (Penn Treebank); embedding width = hidden size."""
    return _language_model(
        "rnnlm",
        "Zaremba et al. 2014, arXiv 1409.2329 (large model); FlexFlow sec. 8",
        batch,
        seq_len,
        hidden,
        vocab,
        layers,
        chunk,
        hidden,
    )


def lstm_lm(
    batch: int = 4096,
    seq_len: int = 20,
    hidden: int = 19968,
    vocab: int = 800000,
    layers: int = 2,
    chunk: int = 5,
) -> OpGraph:
    """DeepFlow's LSTM language model (Ardalani, Pal and Gupta, arXiv 2211.03309; the published
    case study: B = 4096, S = 20, D = 19968, V = 800,000, 2 layers): embedding, stacked
    LSTM layers and a softmax projection onto the vocabulary at every step."""
    return _language_model(
        "lstm_lm",
        "DeepFlow/CrossFlow, arXiv 2211.03309, LSTM workload",
        batch,
        seq_len,
        hidden,
        vocab,
        layers,
        chunk,
        hidden,
    )


def rnntc(
    batch: int = 64,
    seq_len: int = 40,
    hidden: int = 1024,
    vocab: int = 20000,
    layers: int = 2,
    classes: int = 16,
    chunk: int = 10,
) -> OpGraph:
    """The RNN text classifier of FlexFlow's evaluation (RNNTC): an embedding, stacked LSTM
    layers over the sentence, and a classifier on the last hidden state of the top layer.
    FlexFlow does not list its shapes; these defaults (2 layers of 1024 units, 40 tokens, a
    20,000-word vocabulary) match the RNNLM and NMT scale of the same section."""
    chunks = _check(seq_len, chunk)
    net = _Rnn("rnntc", batch, "FlexFlow, arXiv 1807.05358, sec. 8 (RNNTC)")
    prev: list[int | None] = [None] * layers
    x = -1
    for c in range(chunks):
        x = net.embedding(f"embed.{c}", chunk, vocab, hidden, "embed")
        for layer in range(layers):
            x = net.lstm(
                f"lstm{layer}.{c}", x, prev[layer], chunk, hidden, hidden, f"lstm{layer}", layer + 1
            )
            prev[layer] = x
    dims = (
        Dim("sample", batch, DimKind.SAMPLE, GemmAxis.M),
        Dim("hidden", classes, DimKind.PARAMETER, GemmAxis.N),
    )
    fc = net.g.add(
        gemm_op(
            "classifier",
            OpKind.LINEAR,
            dims,
            (Edge(x, fraction=1.0 / chunk, aligned=("sample",)),),
            Gemm(batch, classes, hidden),
            hidden * classes + classes,
            mem=2.0 * batch * classes,
            stage=layers + 1,
            profile=(
                ("rows", batch),
                ("in_features", hidden),
                ("out_features", classes),
                ("relu", False),
            ),
        )
    )
    net.g.add(
        memory_op(
            "softmax",
            OpKind.SOFTMAX,
            (
                Dim("sample", batch, DimKind.SAMPLE, GemmAxis.NONE),
                Dim("hidden", classes, DimKind.ATTRIBUTE, GemmAxis.NONE),
            ),
            (Edge(fc, aligned=("sample", "hidden")),),
            3.0 * batch * classes,
            stage=layers + 1,
            profile=(("rows", batch), ("cols", classes)),
        )
    )
    return net.g.build()


def nmt(
    batch: int = 64,
    seq_len: int = 40,
    hidden: int = 1024,
    vocab: int = 32000,
    layers: int = 2,
    chunk: int = 10,
) -> OpGraph:
    """Neural machine translation as in FlexFlow's evaluation (NMT): an LSTM encoder and an
    LSTM decoder with attention (Bahdanau, Cho, Bengio 2015, arXiv 1409.0473; Wu et al.
    2016, GNMT, arXiv 1609.08144), here with ``layers`` layers of 1024 units on each side,
    40-token source and target sentences and GNMT's 32,000 word-piece vocabulary. Each
    decoder layer starts from the final state of the matching encoder layer; at every target
    chunk the top decoder layer attends over all source positions, and the projection reads
    the attention context and the decoder state (``k = 2H``)."""
    chunks = _check(seq_len, chunk)
    net = _Rnn("nmt", batch, "Wu et al. 2016, arXiv 1609.08144; FlexFlow sec. 8 (NMT)")
    enc_prev: list[int | None] = [None] * layers
    top: list[int] = []
    for c in range(chunks):
        x = net.embedding(f"enc.embed.{c}", chunk, vocab, hidden, "enc.embed")
        for layer in range(layers):
            x = net.lstm(
                f"enc.lstm{layer}.{c}",
                x,
                enc_prev[layer],
                chunk,
                hidden,
                hidden,
                f"enc.lstm{layer}",
                layer + 1,
            )
            enc_prev[layer] = x
        top.append(x)
    dec_prev: list[int | None] = [None] * layers
    stage0 = layers + 1
    for c in range(chunks):
        x = net.embedding(f"dec.embed.{c}", chunk, vocab, hidden, "dec.embed")
        for layer in range(layers):
            extra: tuple[Edge, ...] = ()
            prev = dec_prev[layer]
            if prev is None:
                enc_last = enc_prev[layer]
                assert enc_last is not None
                extra = (Edge(enc_last, fraction=2.0 / chunk, aligned=("sample",)),)
            x = net.lstm(
                f"dec.lstm{layer}.{c}",
                x,
                prev,
                chunk,
                hidden,
                hidden,
                f"dec.lstm{layer}",
                stage0 + layer,
                extra,
            )
            dec_prev[layer] = x
        a = net.attention(f"dec.attn.{c}", x, tuple(top), chunk, seq_len, hidden, stage0 + layers)
        y = net.projection(
            f"dec.proj.{c}", (a, x), chunk, 2 * hidden, vocab, "dec.proj", stage0 + layers
        )
        net.softmax(f"dec.softmax.{c}", y, chunk, vocab, stage0 + layers)
    return net.g.build()
