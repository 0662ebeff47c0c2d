"""The co-design search space: which allocation fractions vary, under which sums.

Variables are ``(group, key)`` pairs of a design's allocation (``("area", "compute")``).
The free variables of one group keep the sum they have in the base design (the fixed ones
keep their values), so every point of the space satisfies the budget: fractions in
``[lower, s_g]`` summing to ``s_g <= 1``. Points are NumPy vectors; :meth:`project` maps
any vector onto the space (Euclidean projection onto a capped simplex, per group).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from deepflow.errors import ConfigError
from deepflow.tech.design import GROUPS, DesignSpec


def project_simplex(v: np.ndarray, total: float, lower: float) -> np.ndarray:
    """Euclidean projection of ``v`` onto ``{x : x_i >= lower, sum x = total}`` (sort-based
    algorithm of Duchi et al. 2008, "Efficient projections onto the l1-ball", Fig. 1,
    shifted by ``lower``)."""
    n = v.shape[0]
    z = total - n * lower
    assert z >= 0, "group sum below its lower bounds"
    w = v - lower
    u = np.sort(w)[::-1]
    css = np.cumsum(u) - z
    ind = np.arange(1, n + 1)
    rho = np.nonzero(u - css / ind > 0)[0][-1]
    theta = css[rho] / (rho + 1)
    return np.maximum(w - theta, 0.0) + lower


@dataclass(frozen=True)
class DesignSpace:
    """Free allocation fractions of ``base`` with their group sums and lower bound."""

    base: DesignSpec
    variables: tuple[tuple[str, str], ...]
    lower: float = 0.005

    @classmethod
    def of(
        cls, base: DesignSpec, variables: Sequence[str] | None = None, lower: float = 0.005
    ) -> DesignSpace:
        """Space over ``variables`` given as ``"group.key"`` (default: every fraction of the
        base allocation); a :class:`ConfigError` names an unknown one."""
        if variables is None:
            pairs = [(g, k) for g in GROUPS for k in base.allocation.group(g)]
        else:
            pairs = []
            for text in variables:
                group, _, key = str(text).partition(".")
                if group not in GROUPS or key not in base.allocation.group(group):
                    raise ConfigError(
                        f"unknown allocation fraction {text!r}; known: "
                        + ", ".join(f"{g}.{k}" for g in GROUPS for k in base.allocation.group(g)),
                        "search.vary",
                    )
                pairs.append((group, key))
        space = cls(base, tuple(pairs), lower)
        for group, idx in space.groups().items():
            if len(idx) < 2:
                raise ConfigError(
                    f"allocation group {group!r} needs two or more free fractions to trade "
                    "(their sum is held fixed)",
                    "search.vary",
                )
            if space.sums()[group] < len(idx) * lower:
                raise ConfigError(f"allocation.{group}: free fractions sum below the bounds")
        return space

    def groups(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, (group, _) in enumerate(self.variables):
            out.setdefault(group, []).append(i)
        return out

    def sums(self) -> dict[str, float]:
        x = self.start()
        return {g: float(x[idx].sum()) for g, idx in self.groups().items()}

    def start(self) -> np.ndarray:
        """The base design's values."""
        return np.array([self.base.allocation.group(g)[k] for g, k in self.variables])

    def project(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, dtype=float)
        sums = self.sums()
        for group, idx in self.groups().items():
            out[idx] = project_simplex(out[idx], sums[group], self.lower)
        return out

    def random(self, rng: np.random.Generator, spread: float = 0.5) -> np.ndarray:
        """A random point: ``(1 - spread) base + spread Dirichlet`` per group (seeded)."""
        x = self.start()
        sums = self.sums()
        for group, idx in self.groups().items():
            d = rng.dirichlet(np.ones(len(idx))) * sums[group]
            x[idx] = (1.0 - spread) * x[idx] + spread * d
        return self.project(x)

    def design(self, x: np.ndarray) -> DesignSpec:
        """The base design with the fractions of ``x`` (no file, no revalidation: every
        point of the space is valid by construction)."""
        values = {pair: float(v) for pair, v in zip(self.variables, x, strict=True)}
        allocation = self.base.allocation.with_values(values)
        return self.base.model_copy(update={"allocation": allocation})
