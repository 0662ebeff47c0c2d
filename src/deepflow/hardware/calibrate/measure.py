"""The kernels a calibration measures, one :class:`Case` each.

Every case builds its operands on the device, times the kernel with a
:class:`~deepflow.hardware.calibrate.timing.Timer` (median of repeats, caches flushed) and
returns records of the calibration file contract (``docs/hardware.md``,
"Calibrating your own accelerator"):

* ``gemm``: ``torch.matmul`` at fp32 (true fp32: TF32 off), tf32 (TF32 on), fp16, bf16;
  fp8 with ``torch._scaled_mm`` (e4m3 inputs, per-tensor float32 scales, bf16 output) on
  CUDA devices of compute capability 8.9 or higher. The operands of the three GEMMs of a
  linear layer are laid out as in training: forward ``Y = X W^T``, input gradient
  ``dX = dY W``, weight gradient ``dW = dY^T X`` (``torch.nn.functional.linear`` and its
  autograd formula, ``torch/csrc/autograd/FunctionsManual.cpp``);
* ``grouped_gemm``: ``groups`` independent ``m x n x k`` GEMMs, the experts of an MoE
  layer, with ``torch._grouped_mm`` (the kernel torchtitan's MoE uses) where this PyTorch
  runs it as one fused kernel for the dtype (:func:`grouped_mm_fused`), else ``torch.bmm``
  (equal groups, one kernel); the record's ``impl`` says which;
* ``attention``: ``torch.nn.functional.scaled_dot_product_attention`` with the backend
  PyTorch picks (``torch._fused_sdp_choice`` names it; the record's ``backend``), forward
  and forward + backward, causal or not, GQA through ``enable_gqa``;
* ``memory``: copy (``dst.copy_(src)``), read (``src.sum()``), write (``dst.fill_``);
  ``bytes`` counts bytes read plus bytes written;
* ``elementwise``: layer norm, RMS norm, softmax, GeLU, SwiGLU, add, cross-entropy, with
  ``bytes`` the least traffic the operation needs (:func:`elementwise_bytes`);
* ``operator``: FlexFlow-style profiles of the per-operator workloads' operators with the
  matching ``torch.nn`` modules (:func:`operator_case`).

A record with ``backward: true`` holds the forward + backward time of one call (the
convention of the attention record, kept for every kind that has a backward pass).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Case",
    "Context",
    "SkipCase",
    "attention_cases",
    "elementwise_bytes",
    "elementwise_cases",
    "gemm_cases",
    "grouped_gemm_cases",
    "memory_cases",
    "operator_case",
]

DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")
ELEMENT_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "fp8": 1}


class SkipCase(Exception):
    """A case that cannot run here (unsupported dtype, too little memory or time): the
    message says why in a few words, the same for every case skipped for that reason;
    ``detail`` gives this case's numbers."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.detail = detail


@dataclass
class Context:
    """What a case needs to run: PyTorch, the device, the timer, and the deadline of the
    whole run (``time.perf_counter`` seconds)."""

    torch: Any
    torch_device: str
    backend: str
    timer: Any
    quick: bool
    deadline: float
    properties: dict[str, object] = field(default_factory=dict)

    def free_bytes(self) -> int:
        """Memory that can still be allocated on the device."""
        if self.torch_device == "cpu":
            return _cpu_available_bytes()
        self.torch.cuda.empty_cache()
        free, _total = self.torch.cuda.mem_get_info()
        return int(free)


def _cpu_available_bytes() -> int:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2 << 30


@dataclass(frozen=True)
class Case:
    """One measurement: ``kind`` (the record kind), ``group`` (the share of the time budget
    it draws on), a ``label`` for the progress bar, the device memory it allocates at most,
    and ``run``, which returns the records."""

    kind: str
    group: str
    label: str
    need_bytes: float
    run: Callable[[Context], list[dict[str, object]]]


def torch_dtype(torch: Any, dtype: str) -> Any:
    return {
        "fp32": torch.float32,
        "tf32": torch.float32,
        "fp16": torch.float16,
        "bf16": torch.bfloat16,
    }[dtype]


@contextlib.contextmanager
def fp32_math(torch: Any, tf32: bool) -> Iterator[None]:
    """Run fp32 matrix math in TF32 (``tf32``) or in full fp32, restoring the setting after.

    PyTorch >= 2.9 sets it with ``torch.backends.cuda.matmul.fp32_precision`` and
    ``torch.backends.cudnn.conv.fp32_precision`` ("tf32" or "ieee"); older versions with
    ``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32``
    (``torch/backends/cuda/__init__.py``, ``torch/backends/cudnn/__init__.py``)."""
    matmul = torch.backends.cuda.matmul
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(matmul, "fp32_precision") and conv is not None:
        old = (matmul.fp32_precision, conv.fp32_precision)
        value = "tf32" if tf32 else "ieee"
        matmul.fp32_precision = value
        conv.fp32_precision = value
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = old
    else:
        old2 = (matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        try:
            yield
        finally:
            matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old2


def _randn(ctx: Context, shape: Sequence[int], dtype: str, grad: bool = False) -> Any:
    torch = ctx.torch
    t = torch.randn(*shape, device=ctx.torch_device, dtype=torch_dtype(torch, dtype))
    return t.requires_grad_(grad) if grad else t


def _check_memory(ctx: Context, need: float) -> None:
    free = ctx.free_bytes()
    # leave a quarter of the free memory for the allocator's rounding and the libraries'
    # workspaces (cuBLAS, cuDNN): never ask for more than is free
    if need > 0.75 * free:
        raise SkipCase(
            "too little free device memory",
            f"needs {need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free",
        )


# -- GEMM ---------------------------------------------------------------------------------


def fp8_supported(ctx: Context) -> str | None:
    """``None`` when fp8 GEMMs can run here, else why not."""
    torch = ctx.torch
    if ctx.backend == "cpu":
        return "fp8 GEMMs are measured on GPUs only"
    if not hasattr(torch, "_scaled_mm") or not hasattr(torch, "float8_e4m3fn"):
        return f"PyTorch {torch.__version__} has no torch._scaled_mm"
    if ctx.backend == "cuda":
        major, minor = torch.cuda.get_device_capability(0)
        if (major, minor) < (8, 9):
            return f"compute capability {major}.{minor} < 8.9 has no fp8 tensor cores"
    return None


def _gemm_run(
    dtype: str, m: int, n: int, k: int, layout: str
) -> Callable[[Context], list[dict[str, object]]]:
    def run(ctx: Context) -> list[dict[str, object]]:
        torch = ctx.torch
        eb = ELEMENT_BYTES[dtype]
        _check_memory(ctx, (m * k + k * n) * max(eb, 4) + m * n * 4)
        if dtype == "fp8":
            why = fp8_supported(ctx)
            if why:
                raise SkipCase(why)
            f8 = torch.float8_e4m3fn if ctx.backend == "cuda" else torch.float8_e4m3fnuz
            a = torch.randn(m, k, device=ctx.torch_device).to(f8)
            # cuBLASLt runs fp8 GEMMs as "TN" only: the second operand column-major
            b = torch.randn(n, k, device=ctx.torch_device).to(f8).t()
            one = torch.ones((), device=ctx.torch_device, dtype=torch.float32)

            def fn(mark: Callable[[], None]) -> object:
                return torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16)
        else:
            a = _randn(ctx, (k, m), dtype).t() if layout[0] == "t" else _randn(ctx, (m, k), dtype)
            b = _randn(ctx, (n, k), dtype).t() if layout[1] == "t" else _randn(ctx, (k, n), dtype)

            def fn(mark: Callable[[], None]) -> object:
                return torch.matmul(a, b)

        with fp32_math(torch, dtype == "tf32"):
            (t,), reps = ctx.timer.measure(fn, deadline=ctx.deadline)
        return [
            {
                "kind": "gemm",
                "dtype": dtype,
                "m": m,
                "n": n,
                "k": k,
                "groups": 1,
                # operand layout (deepflow.specs.kernels.GEMM_LAYOUTS; fp8: "nt" always)
                "layout": "nt" if dtype == "fp8" else layout,
                "time_s": t,
                "repeats": reps,
            }
        ]

    return run


def gemm_shapes(quick: bool) -> list[tuple[int, int, int, str]]:
    """``(m, n, k, layout)`` of the GEMM sweep, distinct ``(m, n, k)``, cheapest first
    within each family: squares, skinny (small M: decode-like and small micro-batches), and
    the forward, input-gradient and weight-gradient GEMMs of the linear layers of a
    Llama-3-8B-like (hidden 4096, FFN 14336) and a Llama-3-70B-like layer (8192, 28672;
    Meta, "The Llama 3 Herd of Models", arXiv 2407.21783, Table 3) at 4096 to 16384 tokens:
    QKV with 8 KV heads of 32/64 (out = 1.5 h / 1.25 h), output projection, SwiGLU up
    (out = 2 f) and down projections."""
    if quick:
        squares = [64, 128, 256]
        skinny = [(16, 256, 256)]
        tokens, layers = [128], [(128, 384, 1.5)]
    else:
        squares = [256, 512, 1024, 2048, 4096, 8192, 16384]
        skinny = [(mm, nn, kk) for mm in (64, 128, 512) for nn, kk in ((4096, 4096), (8192, 8192))]
        skinny += [(mm, 28672, 8192) for mm in (64, 128, 512)]
        tokens = [4096, 16384]
        layers = [(4096, 14336, 1.5), (8192, 28672, 1.25)]
    out: list[tuple[int, int, int, str]] = [(s, s, s, "nn") for s in squares]
    out += [(mm, nn, kk, "nt") for mm, nn, kk in skinny]
    for h, f, qkv in layers:
        for t in tokens:
            for fin, fout in ((h, int(qkv * h)), (h, h), (h, 2 * f), (f, h)):
                out += [(t, fout, fin, "nt"), (t, fin, fout, "nn"), (fout, fin, t, "tn")]
    seen: set[tuple[int, int, int]] = set()
    unique = []
    for mm, nn, kk, lay in out:
        if (mm, nn, kk) not in seen:
            seen.add((mm, nn, kk))
            unique.append((mm, nn, kk, lay))
    return unique


def gemm_cases(dtypes: Sequence[str], quick: bool) -> list[Case]:
    cases = []
    for dtype in dtypes:
        for m, n, k, layout in gemm_shapes(quick):
            if dtype == "fp8" and (m % 16 or n % 16 or k % 16):
                continue
            eb = ELEMENT_BYTES[dtype]
            cases.append(
                Case(
                    "gemm",
                    f"gemm/{dtype}",
                    f"gemm {dtype} {m}x{n}x{k}",
                    (m * k + k * n) * max(eb, 4) + m * n * 4,
                    _gemm_run(dtype, m, n, k, layout),
                )
            )
    return cases


# -- grouped GEMM -------------------------------------------------------------------------


def grouped_mm_fused(ctx: Context, dtype: str) -> bool:
    """Whether ``torch._grouped_mm`` runs one fused kernel for ``dtype`` on this device:
    bf16 on CUDA compute capability 9.x or 10.x (``_grouped_mm_cuda`` in
    aten/src/ATen/native/cuda/GroupedBlas.cpp calls ``bf16bf16_grouped_mm`` there). Elsewhere
    it takes ``_grouped_mm_fallback``, which copies the group offsets to the host (a
    device-to-host synchronization inside the timed call) and issues one ``mm_out`` per
    group: its time is then the host's issue time of the loop, not the GEMMs' (the H200
    file's fp16 grouped records: 16 groups of 256 x 768 x 2048 in 416 us, 31 TFLOP/s,
    against 42 us in bf16). The CPU keeps ``_grouped_mm`` (its loop runs synchronously)."""
    if ctx.torch_device == "cpu":
        return True
    if dtype != "bf16" or ctx.backend != "cuda":
        return False
    major, _minor = ctx.torch.cuda.get_device_capability()
    return major in (9, 10)


def _grouped_run(
    dtype: str, g: int, m: int, n: int, k: int
) -> Callable[[Context], list[dict[str, object]]]:
    def run(ctx: Context) -> list[dict[str, object]]:
        torch = ctx.torch
        eb = ELEMENT_BYTES[dtype]
        _check_memory(ctx, 2 * g * (m * k + k * n + m * n) * eb)
        impl = "bmm"
        fn: Callable[[Callable[[], None]], object]
        if hasattr(torch, "_grouped_mm") and grouped_mm_fused(ctx, dtype):
            # tokens of all experts stacked ([g m, k]), expert weights stored as
            # nn.Linear's [g, n, k] and used transposed, group ends in ``offs``
            x = _randn(ctx, (g * m, k), dtype)
            w = _randn(ctx, (g, n, k), dtype).transpose(-2, -1)
            offs = torch.arange(m, g * m + 1, m, device=ctx.torch_device, dtype=torch.int32)
            try:
                torch._grouped_mm(x, w, offs=offs)
                impl = "grouped_mm"
            except (RuntimeError, NotImplementedError, TypeError):
                impl = "bmm"
            if impl == "grouped_mm":

                def fn(mark: Callable[[], None]) -> object:
                    return torch._grouped_mm(x, w, offs=offs)

        if impl == "bmm":
            a = _randn(ctx, (g, m, k), dtype)
            b = _randn(ctx, (g, n, k), dtype).transpose(-2, -1)

            def fn(mark: Callable[[], None]) -> object:
                return torch.bmm(a, b)

        with fp32_math(torch, dtype == "tf32"):
            (t,), reps = ctx.timer.measure(fn, deadline=ctx.deadline)
        return [
            {
                "kind": "grouped_gemm",
                "dtype": dtype,
                "m": m,
                "n": n,
                "k": k,
                "groups": g,
                "impl": impl,
                "time_s": t,
                "repeats": reps,
            }
        ]

    return run


def grouped_gemm_shapes(quick: bool) -> list[tuple[int, int, int, int]]:
    """``(groups, m, n, k)``: the experts of one rank in MoE layers of Mixtral 8x7B (8
    experts, hidden 4096, FFN 14336, top-2; Jiang et al. 2024, arXiv 2401.04088), of
    DeepSeek-V3 under 32-way expert parallelism (8 of 256 experts, hidden 7168, FFN 2048;
    arXiv 2412.19437) and of Qwen3-30B-A3B under 8-way (16 of 128 experts, hidden 2048,
    FFN 768), at a few tokens per expert: the up (n = FFN) and down (n = hidden)
    projections."""
    if quick:
        return [(4, 32, 64, 128)]
    return [
        (8, 1024, 14336, 4096),
        (8, 1024, 4096, 14336),
        (8, 4096, 14336, 4096),
        (8, 512, 2048, 7168),
        (8, 512, 7168, 2048),
        (8, 2048, 2048, 7168),
        (16, 256, 768, 2048),
        (16, 256, 2048, 768),
        (16, 1024, 768, 2048),
    ]


def grouped_gemm_cases(dtypes: Sequence[str], quick: bool) -> list[Case]:
    cases = []
    for dtype in (d for d in dtypes if d in ("bf16", "fp16", "fp32")):
        for g, m, n, k in grouped_gemm_shapes(quick):
            cases.append(
                Case(
                    "grouped_gemm",
                    f"grouped_gemm/{dtype}",
                    f"grouped gemm {dtype} {g}x({m}x{n}x{k})",
                    2 * g * (m * k + k * n + m * n) * ELEMENT_BYTES[dtype],
                    _grouped_run(dtype, g, m, n, k),
                )
            )
    return cases


# -- attention ----------------------------------------------------------------------------

_BACKEND_NAMES = {
    "FLASH_ATTENTION": "flash",
    "EFFICIENT_ATTENTION": "efficient",
    "CUDNN_ATTENTION": "cudnn",
    "MATH": "math",
    "OVERRIDEABLE": "overrideable",
}


def _sdpa_backend(torch: Any, q: Any, k: Any, v: Any, causal: bool, gqa: bool) -> str:
    """The SDPA backend PyTorch's dispatcher picks for these inputs
    (``torch._fused_sdp_choice``, the function ``scaled_dot_product_attention`` itself calls
    in ``aten/src/ATen/native/transformers/attention.cpp``)."""
    choice = getattr(torch, "_fused_sdp_choice", None)
    if choice is None:
        return "unknown"
    kwargs: dict[str, object] = {"is_causal": causal}
    if gqa:
        kwargs["enable_gqa"] = True
    try:
        idx = int(choice(q, k, v, **kwargs))
        name = torch.nn.attention.SDPBackend(idx).name
    except Exception:  # the choice function's signature differs in this PyTorch
        return "unknown"
    return _BACKEND_NAMES.get(name, name.lower())


def _attention_run(
    dtype: str, b: int, h: int, kv: int, s: int, d: int, causal: bool
) -> Callable[[Context], list[dict[str, object]]]:
    def run(ctx: Context) -> list[dict[str, object]]:
        torch = ctx.torch
        sdpa = torch.nn.functional.scaled_dot_product_attention
        eb = ELEMENT_BYTES[dtype]
        _check_memory(ctx, 4 * b * (2 * h + 2 * kv) * s * d * eb)
        q = _randn(ctx, (b, h, s, d), dtype, grad=True)
        k = _randn(ctx, (b, kv, s, d), dtype, grad=True)
        v = _randn(ctx, (b, kv, s, d), dtype, grad=True)
        do = _randn(ctx, (b, h, s, d), dtype)
        gqa = kv != h
        kwargs: dict[str, object] = {"is_causal": causal}
        if gqa:
            kwargs["enable_gqa"] = True
        try:
            sdpa(q, k, v, **kwargs)
        except TypeError as exc:
            raise SkipCase(f"scaled_dot_product_attention has no enable_gqa: {exc}") from None
        backend = _sdpa_backend(torch, q, k, v, causal, gqa)

        def fn(mark: Callable[[], None]) -> object:
            o = sdpa(q, k, v, **kwargs)
            mark()
            return torch.autograd.grad(o, (q, k, v), do)

        (t_f, t_fb), reps = ctx.timer.measure(fn, deadline=ctx.deadline)
        base = {
            "kind": "attention",
            "dtype": dtype,
            "batch": b,
            "heads": h,
            "kv_heads": kv,
            "seq": s,
            "head_dim": d,
            "causal": causal,
        }
        return [
            {**base, "backward": False, "backend": backend, "time_s": t_f, "repeats": reps},
            {**base, "backward": True, "backend": backend, "time_s": t_fb, "repeats": reps},
        ]

    return run


def attention_shapes(quick: bool) -> list[tuple[int, int, int, int, int, bool]]:
    """``(batch, heads, kv_heads, seq, head_dim, causal)``: 16,384 tokens per call (batch x
    seq) at 1K-16K sequence length, 32 query heads with 32 (MHA) or 8 (GQA, as Llama 3) KV
    heads, head dim 64 and 128, causal and not."""
    if quick:
        return [(1, 4, kv, 128, 64, c) for kv in (4, 2) for c in (True, False)]
    out = []
    for s in (1024, 2048, 4096, 8192, 16384):
        for d in (128, 64):
            for kv in (8, 32):
                for c in (True, False):
                    out.append((max(1, 16384 // s), 32, kv, s, d, c))
    return out


def attention_cases(dtypes: Sequence[str], quick: bool) -> list[Case]:
    cases = []
    for dtype in (d for d in dtypes if d in ("bf16", "fp16")) if not quick else ("bf16",):
        for b, h, kv, s, d, c in attention_shapes(quick):
            cases.append(
                Case(
                    "attention",
                    f"attention/{dtype}",
                    f"attention {dtype} b{b} h{h}/{kv} s{s} d{d}{' causal' if c else ''}",
                    4 * b * (2 * h + 2 * kv) * s * d * ELEMENT_BYTES[dtype],
                    _attention_run(dtype, b, h, kv, s, d, c),
                )
            )
    return cases


# -- memory -------------------------------------------------------------------------------


def _memory_run(op: str, size: int) -> Callable[[Context], list[dict[str, object]]]:
    """``size`` is the buffer size; copy reads one and writes another."""

    def run(ctx: Context) -> list[dict[str, object]]:
        torch = ctx.torch
        buffers = 2 if op == "copy" else 1
        _check_memory(ctx, buffers * size)
        n = max(1, size // 4)
        src = torch.empty(n, device=ctx.torch_device, dtype=torch.float32).fill_(1.0)
        if op == "copy":
            dst = torch.empty_like(src)

            def fn(mark: Callable[[], None]) -> object:
                return dst.copy_(src)
        elif op == "read":

            def fn(mark: Callable[[], None]) -> object:
                return src.sum()
        else:

            def fn(mark: Callable[[], None]) -> object:
                return src.fill_(2.0)

        (t,), reps = ctx.timer.measure(fn, deadline=ctx.deadline)
        moved = n * 4 * (2 if op == "copy" else 1)
        return [{"kind": "memory", "op": op, "bytes": float(moved), "time_s": t, "repeats": reps}]

    return run


def memory_sizes(quick: bool) -> tuple[list[int], list[int]]:
    """Buffer sizes: the large ones that measure sustained bandwidth (1-4 GiB, far beyond
    any cache) and a sweep from 4 KiB up, whose small end is the launch-latency floor."""
    if quick:
        return [16 << 20], [4 << 10, 256 << 10]
    return [1 << 30, 2 << 30, 4 << 30], [4 << (10 + 2 * i) for i in range(10)]  # 4K..1G


def memory_cases(quick: bool) -> list[Case]:
    large, small = memory_sizes(quick)
    cases = []
    for size in [*large, *small]:
        for op in ("copy", "read", "write"):
            cases.append(
                Case(
                    "memory",
                    "memory",
                    f"memory {op} {size / 2**20:g} MiB",
                    (2 if op == "copy" else 1) * size,
                    _memory_run(op, size),
                )
            )
    return cases


# -- element-wise -------------------------------------------------------------------------

ELEMENTWISE_OPS = ("layernorm", "rmsnorm", "softmax", "gelu", "swiglu", "add", "cross_entropy")

# (forward, backward) tensor passes of rows x cols elements that each op needs at least:
# each input read once, each output written once (weights and per-row statistics
# neglected). swiglu reads [rows, 2 cols] and writes [rows, cols]; its backward reads dY and
# both halves and writes both gradients. add's backward passes dY through without a kernel.
# cross_entropy reads the logits (cols = vocabulary) and writes one loss per row; its
# backward recomputes the softmax from the logits and writes their gradient.
_PASSES = {
    "layernorm": (2, 3),
    "rmsnorm": (2, 3),
    "softmax": (2, 3),
    "gelu": (2, 3),
    "swiglu": (3, 5),
    "add": (3, 0),
    "cross_entropy": (1, 2),
}


def elementwise_bytes(op: str, rows: int, cols: int, elem_bytes: int, backward: bool) -> float:
    """Least bytes an element-wise op of ``rows x cols`` moves: forward, or forward plus
    backward (``backward``); see ``_PASSES`` for the count of each op."""
    fwd, bwd = _PASSES[op]
    return float((fwd + (bwd if backward else 0)) * rows * cols * elem_bytes)


def _elementwise_run(
    op: str, dtype: str, rows: int, cols: int
) -> Callable[[Context], list[dict[str, object]]]:
    def run(ctx: Context) -> list[dict[str, object]]:
        torch = ctx.torch
        F = torch.nn.functional
        eb = ELEMENT_BYTES[dtype]
        _check_memory(ctx, 8 * rows * cols * eb)
        width = 2 * cols if op == "swiglu" else cols
        x = _randn(ctx, (rows, width), dtype, grad=True)
        inputs = [x]
        if op in ("layernorm", "rmsnorm"):
            w = _randn(ctx, (cols,), dtype, grad=True)
            inputs.append(w)
            if op == "layernorm":
                bias = _randn(ctx, (cols,), dtype, grad=True)
                inputs.append(bias)

                def f() -> Any:
                    return F.layer_norm(x, (cols,), w, bias)
            elif hasattr(F, "rms_norm"):

                def f() -> Any:
                    return F.rms_norm(x, (cols,), w)
            else:

                def f() -> Any:
                    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
        elif op == "softmax":

            def f() -> Any:
                return F.softmax(x, dim=-1)
        elif op == "gelu":

            def f() -> Any:
                return F.gelu(x)
        elif op == "swiglu":

            def f() -> Any:
                a, b = x.chunk(2, dim=-1)
                return F.silu(a) * b
        elif op == "add":
            y = _randn(ctx, (rows, cols), dtype, grad=True)
            inputs.append(y)

            def f() -> Any:
                return x + y
        else:
            target = torch.randint(0, cols, (rows,), device=ctx.torch_device)

            def f() -> Any:
                return F.cross_entropy(x, target)

        out0 = f()
        grad_out = torch.ones_like(out0) if out0.dim() == 0 else torch.randn_like(out0)

        def fn(mark: Callable[[], None]) -> object:
            out = f()
            mark()
            return torch.autograd.grad(out, inputs, grad_out)

        (t_f, t_fb), reps = ctx.timer.measure(fn, deadline=ctx.deadline)
        return [
            {
                "kind": "elementwise",
                "op": op,
                "dtype": dtype,
                "rows": rows,
                "cols": cols,
                "bytes": elementwise_bytes(op, rows, cols, eb, bwd),
                "backward": bwd,
                "time_s": t,
                "repeats": reps,
            }
            for bwd, t in ((False, t_f), (True, t_fb))
        ]

    return run


def elementwise_shapes(quick: bool) -> list[tuple[str, int, int]]:
    """``(op, rows, cols)``: norms, softmax, GeLU and add on 2K and 16K tokens of hidden
    sizes 1024-8192; SwiGLU on FFN widths of Llama-3-8B/70B (14336, 28672); cross-entropy
    on GPT-2's (50257, padded to 50304 by Megatron) and Llama 3's (128256) vocabularies."""
    if quick:
        return [(op, 64, 256) for op in ELEMENTWISE_OPS]
    out = []
    for rows in (2048, 16384):
        for cols in (1024, 4096, 8192):
            for op in ("layernorm", "rmsnorm", "softmax", "gelu", "add"):
                out.append((op, rows, cols))
        for cols in (4096, 14336, 28672):
            out.append(("swiglu", rows, cols))
    for rows in (4096, 16384):
        for vocab in (50304, 128256):
            out.append(("cross_entropy", rows, vocab))
    return out


def elementwise_cases(dtypes: Sequence[str], quick: bool) -> list[Case]:
    dtype = next((d for d in ("bf16", "fp16", "fp32") if d in dtypes), "bf16")
    return [
        Case(
            "elementwise",
            "elementwise",
            f"{op} {dtype} {rows}x{cols}",
            8 * rows * cols * ELEMENT_BYTES[dtype],
            _elementwise_run(op, dtype, rows, cols),
        )
        for op, rows, cols in elementwise_shapes(quick)
    ]


# -- operator profiles --------------------------------------------------------------------


def operator_size(op: str, shape: dict[str, Any]) -> tuple[float, float]:
    """``(elements, FLOPs)`` of one forward call, roughly: tensors touched (inputs, outputs,
    weights) and arithmetic; used to order the profiles cheapest first and to size their
    memory."""
    s = shape
    if op == "conv2d":
        ho = (s["height"] + 2 * s["pad_h"] - s["kernel_h"]) // s["stride"] + 1
        wo = (s["width"] + 2 * s["pad_w"] - s["kernel_w"]) // s["stride"] + 1
        inp = s["batch"] * s["in_channels"] * s["height"] * s["width"]
        out = s["batch"] * s["out_channels"] * ho * wo
        wgt = s["out_channels"] * s["in_channels"] * s["kernel_h"] * s["kernel_w"]
        return inp + 3 * out + wgt, 2.0 * out * wgt / s["out_channels"]
    if op == "pool2d":
        inp = s["batch"] * s["channels"] * s["height"] * s["width"]
        return 1.25 * inp, float(inp)
    if op == "concat":
        n = s["batch"] * sum(s["channels"]) * s["height"] * s["width"]
        return 2.0 * n, 0.0
    if op == "elementwise":
        n = s["batch"] * s["channels"] * s["height"] * s["width"]
        return 3.0 * n, 2.0 * n
    if op == "linear":
        r, i, o = s["rows"], s["in_features"], s["out_features"]
        return r * i + r * o + i * o, 2.0 * r * i * o
    if op == "softmax":
        return 2.0 * s["rows"] * s["cols"], 5.0 * s["rows"] * s["cols"]
    if op == "embedding":
        return s["vocab"] * s["width"] + 2.0 * s["batch"] * s["steps"] * s["width"], 0.0
    if op == "lstm":
        b, i, h, t = s["batch"], s["input_size"], s["hidden_size"], s["steps"]
        wgt = 4 * h * (i + h)
        return wgt + t * b * (i + 10 * h), 2.0 * t * b * wgt
    if op == "attention":
        b, t, src, h = s["batch"], s["steps"], s["src_len"], s["hidden"]
        return b * (t * h + src * h + 2 * t * src + t * h), 4.0 * b * t * src * h
    raise ValueError(f"no operator profile for {op!r}")


def _operator_module(ctx: Context, op: str, s: dict[str, Any], dtype: str) -> tuple[Any, list]:
    """The forward function and the tensors (inputs, parameters) to differentiate, built
    with the ``torch.nn`` modules that the workload's op stands for."""
    torch = ctx.torch
    nn = torch.nn
    F = nn.functional
    dev, td = ctx.torch_device, torch_dtype(torch, dtype)

    def to(mod: Any) -> Any:
        return mod.to(device=dev, dtype=td).train()

    if op == "conv2d":
        layers = [
            nn.Conv2d(
                s["in_channels"],
                s["out_channels"],
                (s["kernel_h"], s["kernel_w"]),
                stride=s["stride"],
                padding=(s["pad_h"], s["pad_w"]),
                bias=bool(s["bias"]),
            )
        ]
        if s["batch_norm"]:
            layers.append(nn.BatchNorm2d(s["out_channels"]))
        layers.append(nn.ReLU())
        mod = to(nn.Sequential(*layers))
        x = _randn(ctx, (s["batch"], s["in_channels"], s["height"], s["width"]), dtype, True)
        return (lambda: mod(x)), [x, *mod.parameters()]
    if op == "pool2d":
        cls = nn.MaxPool2d if s["mode"] == "max" else nn.AvgPool2d
        mod = to(cls(s["kernel"], s["stride"], s["pad"]))
        x = _randn(ctx, (s["batch"], s["channels"], s["height"], s["width"]), dtype, True)
        return (lambda: mod(x)), [x]
    if op == "concat":
        xs = [
            _randn(ctx, (s["batch"], c, s["height"], s["width"]), dtype, True)
            for c in s["channels"]
        ]
        return (lambda: torch.cat(xs, dim=1)), xs
    if op == "elementwise":
        shape = (s["batch"], s["channels"], s["height"], s["width"])
        a, b = _randn(ctx, shape, dtype, True), _randn(ctx, shape, dtype, True)
        return (lambda: F.relu(a + b)), [a, b]
    if op == "linear":
        mod = to(nn.Linear(s["in_features"], s["out_features"]))
        x = _randn(ctx, (s["rows"], s["in_features"]), dtype, True)
        if s["relu"]:
            return (lambda: F.relu(mod(x))), [x, *mod.parameters()]
        return (lambda: mod(x)), [x, *mod.parameters()]
    if op == "softmax":
        x = _randn(ctx, (s["rows"], s["cols"]), dtype, True)
        return (lambda: F.softmax(x, dim=-1)), [x]
    if op == "embedding":
        mod = to(nn.Embedding(s["vocab"], s["width"]))
        idx = torch.randint(0, s["vocab"], (s["batch"], s["steps"]), device=dev)
        return (lambda: mod(idx)), list(mod.parameters())
    if op == "lstm":
        cell = to(nn.LSTMCell(s["input_size"], s["hidden_size"]))
        b, h = s["batch"], s["hidden_size"]
        xs = _randn(ctx, (s["steps"], b, s["input_size"]), dtype, True)
        h0 = _randn(ctx, (b, h), dtype, True)
        c0 = _randn(ctx, (b, h), dtype, True)

        def lstm() -> Any:
            hc = (h0, c0)
            outs = []
            for t in range(s["steps"]):
                hc = cell(xs[t], hc)
                outs.append(hc[0])
            return torch.stack(outs)

        return lstm, [xs, h0, c0, *cell.parameters()]
    if op == "attention":
        b, t, src, h = s["batch"], s["steps"], s["src_len"], s["hidden"]
        q = _randn(ctx, (b, t, h), dtype, True)
        mem = _randn(ctx, (b, src, h), dtype, True)

        def attend() -> Any:
            p = torch.softmax(torch.bmm(q, mem.transpose(1, 2)), dim=-1)
            return torch.bmm(p, mem)

        return attend, [q, mem]
    raise ValueError(f"no operator profile for {op!r}")


def _operator_run(
    op: str, shape: dict[str, Any], dtype: str
) -> Callable[[Context], list[dict[str, object]]]:
    def run(ctx: Context) -> list[dict[str, object]]:
        torch = ctx.torch
        elems, _ = operator_size(op, shape)
        _check_memory(ctx, 4 * elems * ELEMENT_BYTES[dtype])
        with fp32_math(torch, dtype == "tf32"):
            f, tensors = _operator_module(ctx, op, shape, dtype)
            grad_out = torch.randn_like(f().detach())

            def fn(mark: Callable[[], None]) -> object:
                out = f()
                mark()
                return torch.autograd.grad(out, tensors, grad_out)

            (t_f, t_fb), reps = ctx.timer.measure(fn, deadline=ctx.deadline)
        return [
            {
                "kind": "operator",
                "op": op,
                "shape": dict(shape),
                "dtype": dtype,
                "backward": bwd,
                "time_s": t,
                "repeats": reps,
            }
            for bwd, t in ((False, t_f), (True, t_fb))
        ]

    return run


def operator_case(op: str, shape: dict[str, Any], dtype: str) -> Case:
    """A profile of one operator partition: forward and forward + backward of the module
    (input, weight and bias gradients), in training mode, at ``dtype``."""
    elems, _ = operator_size(op, shape)
    label = ",".join(f"{v}" for v in shape.values())
    return Case(
        "operator",
        "operator",
        f"{op} {dtype} {label}"[:60],
        4 * elems * ELEMENT_BYTES[dtype],
        _operator_run(op, shape, dtype),
    )


def operator_cases(
    shapes: Sequence[tuple[str, dict[str, Any]]],
    dtypes: Sequence[str],
    quick: bool,
) -> list[Case]:
    """Profiles of ``shapes`` (from :func:`deepflow.workload.profiles.builtin_operator_shapes`)
    in round-robin over the operator kinds, cheapest first within each, so that a time
    budget that runs out leaves every kind measured at its small shapes. ``quick`` keeps
    the two cheapest of each kind under 0.5 GFLOP."""
    by_op: dict[str, list[tuple[float, dict[str, Any]]]] = {}
    for op, shape in shapes:
        elems, flops = operator_size(op, shape)
        by_op.setdefault(op, []).append((flops + 10.0 * elems, shape))
    queues = []
    for op, items in by_op.items():
        items.sort(key=lambda it: it[0])
        if quick:
            items = [it for it in items if it[0] < 5e8][:2]
        queues.append((op, items))
    ordered: list[tuple[str, dict[str, Any]]] = []
    for i in range(max((len(q) for _, q in queues), default=0)):
        for op, items in queues:
            if i < len(items):
                ordered.append((op, items[i][1]))
    return [operator_case(op, shape, dtype) for dtype in dtypes for op, shape in ordered]
