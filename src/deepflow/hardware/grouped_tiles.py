"""Expected row tiles of a grouped GEMM whose groups (MoE experts) carry uneven row counts.

A grouped GEMM tiles every group on its own: each expert's rows are cut into
``tile``-row output tiles, the last one padded (partly empty). So an expert with ``x``
rows costs ``ceil(x / tile)`` row tiles, and a rank's ``g`` local experts, carrying ``R``
rows in all, cost ``sum_i ceil(x_i / tile)`` tiles: about ``R / tile + g / 2`` when the
counts vary over more than a tile, not ``g ceil(R / (g tile))`` (the mean count's tiles).
The kernels do exactly this:

* Megatron-Core ``TEGroupedMLP.forward`` (``megatron/core/transformer/moe/experts.py``)
  hands ``tokens_per_expert.tolist()`` to Transformer Engine's ``GroupedLinear`` as
  ``m_splits`` (``TEGroupedLinear.forward``, ``megatron/core/extensions/
  transformer_engine.py``), which runs one cuBLAS GEMM of ``m_splits[i]`` rows per expert
  (``general_grouped_gemm`` -> ``nvte_multi_stream_cublas_gemm``,
  ``transformer_engine/common/gemm/cublaslt_gemm.cu``): each is tiled separately;
* the ``grouped_gemm`` package's ``CublasGroupedGemm`` (``csrc/grouped_gemm.cu``, behind
  Megatron-Core's ``GroupedMLP``) loops over the experts' ``batch_sizes`` with one cuBLAS
  call each;
* DeepGEMM's m-grouped contiguous layout (``m_grouped_fp8_gemm_nt_contiguous``) requires
  each expert's segment padded to ``get_m_alignment_for_contiguous_layout()`` (=
  ``get_mk_alignment_for_contiguous_layout``, 128 rows, ``deep_gemm/utils/layout.py``), the
  M block of its kernels.

The row counts are a stated statistical model (the routing's,
:func:`deepflow.parallel.routing.expert_row_spread`): one expert's rows ``X ~ N(mu,
sigma)``, loads continuous, ``X <= 0`` meaning no rows. Then, with ``S(x) = P(X > x)``,

    E[ceil(X+ / t)] = sum_{j >= 0} S(j t)

computed two ways, each accurate to about 1e-7 tiles (the normal-CDF approximation):

* ``sigma < t / 4``: the sum itself over the ``W = 7`` tile boundaries within ``9 sigma`` of
  ``mu`` (``S = 1`` below them, 0 above);
* ``sigma >= t / 4``: the Fourier series of ``ceil`` (``ceil(y) = y + 1/2 + sum_k
  sin(2 pi k y) / (pi k)`` for non-integer ``y``), whose expectation under ``Y = X / t ~
  N(mu / t, sigma / t)`` is

      E[ceil(Y)] = mu / t + 1/2 + sum_{k >= 1} sin(2 pi k mu / t) exp(-2 pi^2 k^2 sigma^2
      / t^2) / (pi k)

  (Poisson summation: the fractional part of ``Y`` is uniform up to terms of order
  ``exp(-2 pi^2 sigma^2 / t^2)``, 5e-6 at ``sigma = t / 2``), five terms, plus the
  negative tail ``sum_{j >= 1} P(X <= -j t)`` that ``X+`` removes (eight terms, the rest
  by the Euler-Maclaurin formula).

Experts with a capacity (``--moe-expert-capacity-factor`` without padding) keep at most
``C`` rows, ``min(X+, C)``: the boundaries below ``J t``, ``J = ceil(C / t)``, i.e. the sum
above less the same sum for ``X - J t`` (:func:`expected_row_tiles`' ``cap``).

Limits: ``sigma = 0`` gives ``ceil(mu / t)`` exactly (every expert the same count: the
balanced, deterministic case, e.g. padded to capacity); ``sigma >> t`` gives ``mu / t +
1/2``, each expert's last tile half full on average. The expectation is non-decreasing in
``mu`` at fixed ``sigma`` (each ``S(j t)`` is), and between ``E[X+] / t`` and ``E[X+] / t
+ P(X > 0)``. Assumption: the normal model of non-negative counts needs ``mu`` a few
``sigma`` above zero to describe real counts (the routing data give ``mu >= 4.5 sigma``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["UnevenRows", "expected_row_tiles", "normal_sf"]

_FOURIER_FROM = 0.25  # sigma / t at which the Fourier series replaces the direct sum
_WINDOW = 7  # tile boundaries the direct sum evaluates (covers mu +- 9 sigma at sigma < t/4)
_HARMONICS = 5
_NEGATIVE_TILES = 8
_SIGMA_MIN = 1e-6

# Numerical Recipes' erfc (Press et al., "Numerical Recipes in C", 2nd ed., sec. 6.2,
# ``erfcc``: Chebyshev fit, fractional error below 1.2e-7 everywhere)
_ERFC = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def normal_sf(z: object) -> np.ndarray:
    """``P(Z > z)`` for a standard normal ``Z``, vectorized: ``erfc(z / sqrt 2) / 2`` with
    Numerical Recipes' ``erfcc`` (fractional error below 1.2e-7)."""
    x = np.asarray(z, dtype=np.float64) / np.sqrt(2.0)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * a)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC[1:]):
        poly = t * (poly + c)
    erfc = t * np.exp(-a * a + _ERFC[0] + poly)
    return 0.5 * np.where(x >= 0.0, erfc, 2.0 - erfc)


@dataclass(frozen=True)
class UnevenRows:
    """The row counts of a grouped GEMM's groups (arrays over strategies): normal, of mean
    ``mean`` and standard deviation ``spread``, each group cut at ``cap`` rows (``None``:
    no cap; MoE experts with a capacity factor drop the rows above it)."""

    mean: object
    spread: object
    cap: object = None

    def with_last_axis(self) -> UnevenRows:
        """The same rows with a last axis of length one on each array, so that
        :meth:`tiles` broadcasts them against tiles along a last axis (the candidate tiles
        of :func:`~deepflow.hardware.kernels.gemm_terms`), element for element the same."""

        def last(value: object) -> object:
            return None if value is None else np.asarray(value, dtype=np.float64)[..., None]

        return UnevenRows(last(self.mean), last(self.spread), last(self.cap))

    def tiles(self, tile: object) -> np.ndarray:
        """Expected row tiles of one group: :func:`expected_row_tiles`."""
        return expected_row_tiles(self.mean, self.spread, tile, self.cap)


def expected_row_tiles(
    rows: object, spread: object, tile: object, cap: object = None
) -> np.ndarray:
    """Expected ``ceil(X+ / tile)`` for one group's rows ``X ~ N(rows, spread)`` (module
    docstring): ``ceil(rows / tile)`` at ``spread = 0``, ``rows / tile + 1/2`` once
    ``spread`` exceeds the tile. With a ``cap`` ``C`` the rows are ``min(X+, C)``, whose
    tiles are the boundaries below ``J t``, ``J = ceil(C / t)``: ``sum_{j < J} P(X > j t)``
    = ``E[ceil(X+ / t)] - E[ceil((X - J t)+ / t)]`` (the second term: the same sum for ``X``
    shifted down by ``J`` tiles). Vectorized over all arguments."""
    full = _expected_tiles(rows, spread, tile)
    if cap is None:
        return full
    t = np.asarray(tile, dtype=np.float64)
    whole = np.ceil(np.maximum(np.asarray(cap, dtype=np.float64), 0.0) / t)
    return full - _expected_tiles(np.asarray(rows, dtype=np.float64) - whole * t, spread, t)


def _expected_tiles(rows: object, spread: object, tile: object) -> np.ndarray:
    """``sum_{j >= 0} P(X > j t)`` for ``X ~ N(rows, spread)``, any real ``rows``."""
    mu = np.asarray(rows, dtype=np.float64)
    sigma = np.asarray(spread, dtype=np.float64)
    sigma = np.where(sigma > _SIGMA_MIN, sigma, 0.0)  # below a millionth of a row: equal
    t = np.asarray(tile, dtype=np.float64)
    exact = np.ceil(np.maximum(mu, 0.0) / t)
    if not np.any(sigma > 0.0):
        return exact + 0.0 * sigma
    mu, sigma, t, exact = np.broadcast_arrays(mu, sigma, t, exact)
    r = sigma / t
    safe = np.where(sigma > 0.0, sigma, 1.0)
    # direct sum over the boundaries j t with j in [j0, j0 + W): S = 1 below j0
    j0 = np.maximum(np.floor((mu - 9.0 * sigma) / t), 0.0)
    direct = j0.copy()
    for i in range(_WINDOW):
        direct = direct + normal_sf(((j0 + i) * t - mu) / safe)
    # Fourier series of ceil, then the part of the negative tail X+ removes
    y = mu / t
    fourier = y + 0.5
    for k in range(1, _HARMONICS + 1):
        damp = np.exp(-2.0 * np.pi**2 * k * k * r * r)
        fourier = fourier + np.sin(2.0 * np.pi * k * y) * damp / (np.pi * k)
    for j in range(1, _NEGATIVE_TILES + 1):
        fourier = fourier + normal_sf((mu + j * t) / safe)
    # the rest of it, j > 8, by Euler-Maclaurin: the integral of P(X <= -x) from
    # (8 + 1) t on, sigma (phi(z) - z Phi(-z)) / t, plus the end corrections
    z = (mu + (_NEGATIVE_TILES + 1) * t) / safe
    phi = np.exp(-0.5 * z * z) / np.sqrt(2.0 * np.pi)
    upper = normal_sf(z)
    fourier = fourier + (safe / t) * (phi - z * upper) + upper / 2.0 + t * phi / (12.0 * safe)
    smooth = np.where(r < _FOURIER_FROM, direct, fourier)
    return np.where(sigma > 0.0, smooth, exact)
