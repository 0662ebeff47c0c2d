"""The exception tree of deepflow.

Three kinds of failure are kept apart (docs/DESIGN.md, "Principles"):

* malformed input raises a :class:`ConfigError` naming the key path, the rule and the value;
* a valid but infeasible design (out of memory, indivisible degrees) is *not* an exception:
  it is a result with ``feasible=False`` and a reason;
* a broken internal invariant is an ``assert``.

::

    DeepflowError
     +-- ConfigError          bad key, value, unit or preset in user input
     |    +-- UnitError        a quantity string that cannot be parsed
     +-- TraceError           malformed execution trace or collective algorithm file
"""

from __future__ import annotations


class DeepflowError(Exception):
    """Root of every error deepflow raises on purpose."""


class ConfigError(DeepflowError, ValueError):
    """Malformed user input.

    ``path`` is the dotted key path inside the input (``strategy.tp``); ``source`` is the
    file it came from, when known. ``str()`` gives ``source: path: message``.
    """

    def __init__(self, message: str, path: str = "", source: str | None = None) -> None:
        self.message = message
        self.path = path
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [p for p in (self.source, self.path) if p]
        return ": ".join([*parts, self.message])

    def with_source(self, source: str) -> ConfigError:
        """Return the same error, attributed to the file ``source``."""
        return type(self)(self.message, self.path, source)

    def under(self, prefix: str) -> ConfigError:
        """Return the same error with ``prefix`` prepended to its key path."""
        path = f"{prefix}.{self.path}" if self.path else prefix
        return type(self)(self.message, path, self.source)


class UnitError(ConfigError):
    """A quantity that cannot be parsed or has the wrong dimension."""


class TraceError(DeepflowError, ValueError):
    """A malformed execution trace, network config or collective algorithm file.

    The message names the file, the node or key, and the problem.
    """
