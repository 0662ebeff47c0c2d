"""The clock of a GEMM table timed by a host loop: a boost window, then the sustained clock.

A microbenchmark that times ``timed`` calls of one GEMM after ``warmup`` untimed calls with
the host's wall clock (SimuMax, ``simu_tools/efficency_test/test_gemm_efficiency.py``,
``run_te_gemm``: ``for i in range(test_steps)``, a device synchronization and
``time.time()`` at ``i == warmup_steps``, a synchronization and ``time.time()`` after the
loop, the mean over ``test_steps - warmup_steps`` calls; ``test()`` passes
``test_steps = 100, warmup_steps = 25``: 25 warm-up and 75 timed calls, commit
4dcaae513ba7679d56c116a17cd4a691ec41e252) keeps the device busy from the first warm-up call
to the last timed one. The model of its clock: the calls inside a boost window of ``W``
seconds of busy device from the loop's first call run ``b`` times faster than the sustained
kernel (a GPU under a power limit may run above the clock it can sustain for a while after
it leaves idle), the calls after it at the sustained clock.

With ``t_s`` the sustained kernel time, ``t_b = t_s / b`` the boosted one, the window
holds ``n = W / t_b`` calls (fractional: the call that straddles its end runs partly
boosted), of which ``clip(n - warmup, 0, timed)`` are timed::

    t_measured = (n_b t_b + (timed - n_b) t_s) / timed,   n_b = clip(W b / t_s - warmup, 0, timed)

A short loop (``warmup + timed`` calls inside the window) measures the boosted kernel, a
long one the sustained kernel. :func:`host_loop_time` is that formula;
:func:`sustained_time` its inverse, the sustained kernel time of a record from its own
measured time (the fit's normalization of such a table, ``GemmSample.host_loop``). The
shipped GEMM curves predict the sustained clock: a training step keeps the device busy far
longer than the fitted window (docs/hardware.md, "Clock of a host-timed table"). ``b`` and
``W`` are fitted to the table (:func:`deepflow.hardware.kernels.fit_gemm_curve`); the curve
records them
(``GemmCurve.clock_boost``, ``GemmCurve.boost_window_s``) as properties of the
measurement, which the estimator does not use.
"""

from __future__ import annotations

import numpy as np


def host_loop_time(
    kernel_s: object, boost: object, window_s: object, warmup: object, timed: object
) -> np.ndarray:
    """Mean time of the ``timed`` calls of a host loop of ``warmup + timed`` calls of a
    kernel that takes ``kernel_s`` at the sustained clock, with a boost window of
    ``window_s`` seconds at ``boost`` times the sustained rate (module docstring). Arrays
    broadcast; ``timed`` 0 (not a host-timed record): ``kernel_s``."""
    t_s = np.asarray(kernel_s, dtype=np.float64)
    b = np.asarray(boost, dtype=np.float64)
    w = np.asarray(warmup, dtype=np.float64)
    n = np.asarray(timed, dtype=np.float64)
    safe = np.maximum(n, 1.0)
    boosted = np.clip(np.asarray(window_s, dtype=np.float64) * b / t_s - w, 0.0, safe)
    mean = (boosted * t_s / b + (safe - boosted) * t_s) / safe
    return np.where(n > 0, mean, t_s)


def sustained_time(
    measured_s: object, boost: object, window_s: object, warmup: object, timed: object
) -> np.ndarray:
    """The sustained kernel time ``t_s`` whose host loop measures ``measured_s``: the
    inverse of :func:`host_loop_time` (it rises with ``t_s``). Three cases by the measured
    time ``t_m``: the whole loop in the window (``t_m <= W / (warmup + timed)``),
    ``t_s = b t_m``; the window over before the timed calls (``t_m >= W b / warmup``),
    ``t_s = t_m``; between, ``timed t_m = (n - warmup) t_s / b + (warmup + timed - n) t_s``
    with ``n = W b / t_s``, i.e. ``t_s = (timed t_m + (b - 1) W) / (warmup + timed -
    warmup / b)``."""
    t_m = np.asarray(measured_s, dtype=np.float64)
    b = np.asarray(boost, dtype=np.float64)
    win = np.asarray(window_s, dtype=np.float64)
    w = np.asarray(warmup, dtype=np.float64)
    n = np.asarray(timed, dtype=np.float64)
    calls = np.maximum(w + n, 1.0)
    between = (n * t_m + (b - 1.0) * win) / np.maximum(calls - w / b, 1e-30)
    all_boosted = t_m * calls <= win
    none_timed = t_m * w >= win * b
    t_s = np.where(all_boosted, b * t_m, np.where(none_timed, t_m, between))
    return np.where(n > 0, t_s, t_m)
