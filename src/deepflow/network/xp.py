"""Array or scalar: the two helpers that let the collective cost formulas run on one value.

The closed forms of :mod:`deepflow.network.collectives` and
:mod:`deepflow.network.algorithms.ring` are written once, for NumPy arrays over strategies.
``deepflow.predict`` evaluates one strategy at a time, where each operation on a
one-element array pays NumPy's array machinery (about a microsecond) for one number. The
same source lines run on NumPy ``float64`` *scalars* instead when the caller passes
scalars: NumPy scalar arithmetic is the same IEEE double arithmetic (same rounding, same
``inf``/``nan`` and the same division-by-zero warnings under ``np.errstate``) at a
fraction of the cost. Two NumPy calls would turn a scalar back into an array:
``np.asarray`` and ``np.where``; :func:`f64` and :func:`select` keep scalars scalar and are
those calls for anything else (:func:`asarray` keeps a NumPy scalar as it is); :func:`maximum` and :func:`minimum` skip the ufunc
machinery for two float scalars. ``tests/network/test_xp.py`` checks that both ways give the
same bits.
"""

from __future__ import annotations

import numpy as np

_SCALARS = (float, int, bool, np.float64, np.int64, np.bool_)
_FLOATS = (float, np.float64)
_CONDITIONS = (bool, np.bool_)


def asarray(value: object) -> object:
    """``np.asarray(value)``, except that a NumPy scalar stays that scalar (its dtype
    kept)."""
    if isinstance(value, np.generic):
        return value
    return np.asarray(value)


def f64(value: object) -> object:
    """``np.asarray(value, dtype=np.float64)``, except that a number (Python or NumPy
    scalar) becomes a NumPy ``float64`` scalar rather than a 0-d array."""
    kind = type(value)
    if kind is np.float64:
        return value
    if kind in _SCALARS:
        return np.float64(value)  # type: ignore[arg-type]
    return np.asarray(value, dtype=np.float64)


def select(condition: object, a: object, b: object) -> object:
    """``np.where(condition, a, b)``, except that for a scalar condition and float scalar
    branches it is the chosen branch as a NumPy ``float64`` scalar."""
    if type(condition) in _CONDITIONS and type(a) in _FLOATS and type(b) in _FLOATS:
        return np.float64(a if condition else b)  # type: ignore[arg-type]
    return np.where(condition, a, b)  # type: ignore[call-overload]


def maximum(a: object, b: object) -> object:
    """``np.maximum(a, b)``; for two scalars, NumPy's rule without its ufunc machinery:
    ``a`` where ``a > b`` or ``a`` is NaN, else ``b`` (so NaN propagates and, of two equal
    zeros, the second is returned), as a NumPy ``float64`` scalar, for two float scalars."""
    if type(a) in _FLOATS and type(b) in _FLOATS:
        return np.float64(a if (a > b or a != a) else b)  # type: ignore[arg-type,operator]
    return np.maximum(a, b)  # type: ignore[call-overload]


def minimum(a: object, b: object) -> object:
    """``np.minimum(a, b)``; for two float scalars, NumPy's rule without its ufunc
    machinery: ``a`` where ``a < b`` or ``a`` is NaN, else ``b`` (NaN propagates; of two
    equal zeros, the second is returned), as a NumPy ``float64`` scalar."""
    if type(a) in _FLOATS and type(b) in _FLOATS:
        return np.float64(a if (a < b or a != a) else b)  # type: ignore[arg-type,operator]
    return np.minimum(a, b)  # type: ignore[call-overload]
