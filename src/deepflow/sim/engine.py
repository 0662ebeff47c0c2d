"""A small deterministic discrete-event kernel, in the style of SimPy's core.

The kernel knows nothing about deep learning: it orders *events* in time and runs the
callbacks attached to them. Everything a model needs is built from four pieces:

* :class:`Event` - something that happens once, with a value (``succeed``) or an exception
  (``fail``); callbacks run when the kernel processes it;
* :class:`Timeout` - an event that the kernel triggers ``delay`` time units from now;
* :class:`Process` - a generator that ``yield``\\ s events and is resumed with their values;
  the process is itself an event that triggers when the generator returns;
* :class:`Resource` - ``capacity`` slots handed out first come, first served.

Determinism. Pending events sit in one heap keyed on ``(time, priority, seq)``: ``time`` is
when the event fires, ``priority`` lets urgent bookkeeping (process start, resource grants)
run before ordinary events of the same instant, and ``seq`` is a counter that breaks the
remaining ties in scheduling order. There is no global state and no randomness, so the same
model gives the same trace, bit for bit. All state lives in an :class:`Environment`.

Failures are never swallowed: an event that fails with nobody waiting on it re-raises its
exception out of :meth:`Environment.step` (SimPy's rule, ``simpy/core.py``).

Time is a plain number in whatever unit the model chooses (integers keep ns-tick models
exact). Model: SimPy ``core.py`` and ``events.py`` (MIT), simplified.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Callable, Generator, Iterable
from typing import Any

__all__ = [
    "NORMAL",
    "URGENT",
    "AllOf",
    "EmptySchedule",
    "Environment",
    "Event",
    "Process",
    "Request",
    "Resource",
    "Timeout",
]

URGENT = 0
"""Priority of kernel bookkeeping (process start and resume, resource grants)."""
NORMAL = 1
"""Priority of ordinary events."""

_PENDING = object()


class EmptySchedule(Exception):
    """Raised by :meth:`Environment.step` when no event is left."""


class Event:
    """Something that happens once at a point in simulated time.

    An event is *triggered* when it is given an outcome (``succeed`` or ``fail``) and put on
    the schedule, and *processed* when the kernel pops it and runs its callbacks. Callbacks
    receive the event; ``value`` holds the outcome (the exception, for a failed event).
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.callbacks: list[Callable[[Event], None]] | None = []
        self._value: Any = _PENDING
        self._ok = True
        self._defused = False

    @property
    def triggered(self) -> bool:
        return self._value is not _PENDING

    @property
    def processed(self) -> bool:
        return self.callbacks is None

    @property
    def ok(self) -> bool:
        return self._ok

    @property
    def value(self) -> Any:
        if self._value is _PENDING:
            raise AttributeError(f"{self!r} has no value yet")
        return self._value

    def succeed(self, value: Any = None, priority: int = NORMAL) -> Event:
        """Give the event a value and schedule it for now."""
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been triggered")
        self._ok, self._value = True, value
        self.env.schedule(self, priority)
        return self

    def fail(self, exception: BaseException, priority: int = NORMAL) -> Event:
        """Give the event an exception and schedule it for now."""
        if self.triggered:
            raise RuntimeError(f"{self!r} has already been triggered")
        self._ok, self._value = False, exception
        self.env.schedule(self, priority)
        return self

    def defuse(self) -> None:
        """Mark a failure as handled so that the kernel does not re-raise it."""
        self._defused = True


class Timeout(Event):
    """An event that triggers ``delay`` time units after its creation."""

    def __init__(self, env: Environment, delay: float, value: Any = None) -> None:
        if delay < 0:
            raise ValueError(f"negative delay {delay}")
        super().__init__(env)
        self._value = value
        env.schedule(self, NORMAL, delay)


class _Initialize(Event):
    """Starts a process at the current time, before ordinary events of this instant."""

    def __init__(self, env: Environment, process: Process) -> None:
        super().__init__(env)
        self._value = None
        self.callbacks = [process._resume]
        env.schedule(self, URGENT)


class Process(Event):
    """Runs a generator of events; triggers with the generator's return value.

    The generator yields an :class:`Event` and is resumed with its value once the kernel has
    processed it (or has the exception thrown into it, for a failed event).
    """

    def __init__(self, env: Environment, generator: Generator[Event, Any, Any]) -> None:
        super().__init__(env)
        self._generator = generator
        self._target: Event | None = _Initialize(env, self)

    def _resume(self, event: Event) -> None:
        while True:
            try:
                if event.ok:
                    nxt = self._generator.send(event.value)
                else:
                    event.defuse()
                    nxt = self._generator.throw(event.value)
            except StopIteration as stop:
                self._target = None
                self.succeed(stop.value, URGENT)
                return
            except BaseException as exc:
                self._target = None
                self.fail(exc, URGENT)
                return
            if not isinstance(nxt, Event):
                raise TypeError(f"a process may only yield events, got {nxt!r}")
            self._target = nxt
            if nxt.callbacks is not None:
                nxt.callbacks.append(self._resume)
                return
            event = nxt  # already processed: continue at once with its outcome


class AllOf(Event):
    """Triggers when every event in ``events`` has been processed; its value is the list of
    their values, in the given order. Fails as soon as one of them fails."""

    def __init__(self, env: Environment, events: Iterable[Event]) -> None:
        super().__init__(env)
        self._events = list(events)
        self._left = len(self._events)
        if self._left == 0:
            self.succeed([])
            return
        for ev in self._events:
            if ev.callbacks is None:
                self._check(ev)
            else:
                ev.callbacks.append(self._check)

    def _check(self, event: Event) -> None:
        if self.triggered:
            return
        if not event.ok:
            event.defuse()
            self.fail(event.value)
            return
        self._left -= 1
        if self._left == 0:
            self.succeed([ev.value for ev in self._events])


class Request(Event):
    """A claim on one slot of a :class:`Resource`; triggers when the slot is granted."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource.env)
        self.resource = resource


class Resource:
    """``capacity`` identical slots granted in request order (first come, first served)."""

    def __init__(self, env: Environment, capacity: int = 1) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.env = env
        self.capacity = capacity
        self.users: list[Request] = []
        self.queue: deque[Request] = deque()

    @property
    def count(self) -> int:
        """Slots in use."""
        return len(self.users)

    def request(self) -> Request:
        req = Request(self)
        self.queue.append(req)
        self._grant()
        return req

    def release(self, request: Request) -> None:
        """Give back a granted slot, or withdraw a request still waiting."""
        if request in self.users:
            self.users.remove(request)
        elif request in self.queue:
            self.queue.remove(request)
        self._grant()

    def _grant(self) -> None:
        while self.queue and len(self.users) < self.capacity:
            req = self.queue.popleft()
            self.users.append(req)
            req.succeed(req, URGENT)


class Environment:
    """The simulated clock and the schedule of pending events."""

    def __init__(self, initial_time: float = 0) -> None:
        self._now = initial_time
        self._queue: list[tuple[float, int, int, Event]] = []
        self._seq = itertools.count()

    @property
    def now(self) -> float:
        return self._now

    def schedule(self, event: Event, priority: int = NORMAL, delay: float = 0) -> None:
        """Put ``event`` on the schedule ``delay`` time units from now."""
        heapq.heappush(self._queue, (self._now + delay, priority, next(self._seq), event))

    def peek(self) -> float:
        """Time of the next event, or infinity when none is left."""
        return self._queue[0][0] if self._queue else float("inf")

    def step(self) -> None:
        """Process the next event: advance the clock and run its callbacks."""
        try:
            self._now, _, _, event = heapq.heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks or ():
            callback(event)
        if not event.ok and not event._defused:
            raise event.value

    def run(self, until: float | Event | None = None) -> Any:
        """Run until the schedule is empty, until time ``until``, or until event ``until``
        has been processed (then return its value)."""
        if isinstance(until, Event):
            stop = until
            while not stop.processed:
                try:
                    self.step()
                except EmptySchedule:
                    raise RuntimeError(f"no events left before {stop!r} triggered") from None
            if not stop.ok:
                raise stop.value
            return stop.value
        limit = float("inf") if until is None else until
        if limit < self._now:
            raise ValueError(f"until={until} lies before now={self._now}")
        while self._queue and self._queue[0][0] < limit:
            self.step()
        if until is not None:
            self._now = until
        return None

    # conveniences, as in SimPy
    def event(self) -> Event:
        return Event(self)

    def timeout(self, delay: float, value: Any = None) -> Timeout:
        return Timeout(self, delay, value)

    def process(self, generator: Generator[Event, Any, Any]) -> Process:
        return Process(self, generator)

    def all_of(self, events: Iterable[Event]) -> AllOf:
        return AllOf(self, events)
