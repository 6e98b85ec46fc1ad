"""The state of one inference in flight, shared by the threads that run it.

A :class:`CallState` is made per call, so nothing a stale thread writes can reach the
next call. It holds what each side has posted to the other (CPU pairs and event
synchronisation), the first error raised on either side, and each side's result. Every
wait on it has a deadline and wakes every few tens of milliseconds, so a waiting caller
stays interruptible and a side that never answers becomes an error that names it.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ..errors import ExecutionError

POLL_S = 0.05  # longest uninterrupted sleep of a waiting thread
PROBE_S = 0.02  # how often a wait on the GPU asks it for a device error (runtime.faults)


class Abort(Exception):
    """Raised inside a side's program to stop it: the call has failed elsewhere (the
    other side, the caller, a deadline); the first error is in ``CallState.error``."""


class CallState:
    """One call: posts per channel, the first error, results per processor."""

    def __init__(self, n_channels: int, timeout_s: float, labels: tuple[str, str]) -> None:
        self.cond = threading.Condition()
        self.posted = [False] * n_channels
        self.values: list[Any] = [None] * n_channels  # hand-overs between CPU groups
        self.error: BaseException | None = None
        self.results: list[Any] = [None, None]
        self.finished = [False, False]
        self.gpu_started = False  # work may have been enqueued on the GPU
        self.timeout_s = timeout_s
        self.labels = labels  # "processor 0 (cpu)", ... for messages
        self.probe: Callable[[], None] | None = None  # raises on a device error of processor 1

    # --- errors ---------------------------------------------------------------------
    def fail(self, error: BaseException) -> None:
        """Record ``error`` (the first one wins) and wake every waiter."""
        with self.cond:
            if self.error is None:
                self.error = error
            self.cond.notify_all()

    def check(self) -> None:
        """Raise :class:`Abort` if the call has failed."""
        if self.error is not None:
            raise Abort

    def deadline(self) -> float:
        return time.monotonic() + self.timeout_s

    def timed_out(self, sender: int, what: str) -> ExecutionError:
        return ExecutionError(f"{self.labels[sender]} did not deliver {what} within {self.timeout_s:g} s; "
                              f"the call was abandoned (raise timeout_s for slower models)")

    def checker(self, sender: int, what: str) -> "Checker":
        return Checker(self, sender, what)

    # --- posts between threads ------------------------------------------------------
    def post(self, ch: int, value: Any = None) -> None:
        with self.cond:
            self.values[ch] = value
            self.posted[ch] = True
            self.cond.notify_all()

    def wait_posted(self, ch: int, sender: int, what: str) -> Any:
        deadline = self.deadline()
        with self.cond:
            while not self.posted[ch]:
                if self.error is not None:
                    raise Abort
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self.timed_out(sender, what)
                self.cond.wait(min(left, POLL_S))
            value, self.values[ch] = self.values[ch], None
            return value

    # --- results --------------------------------------------------------------------
    def finish(self, proc: int, result: Any) -> None:
        with self.cond:
            self.results[proc] = result
            self.finished[proc] = True
            self.cond.notify_all()

    def wait_finished(self, proc: int, deadline: float | None = None) -> bool:
        """Wait until ``proc``'s thread has finished this call (False at ``deadline``).
        The wait wakes every ``POLL_S`` so an interrupt reaches the caller."""
        with self.cond:
            while not self.finished[proc]:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                self.cond.wait(POLL_S)
        return True


class Prober:
    """``probe`` (which raises on a device error) rate-limited for one wait on the GPU:
    called with the time now, it probes at most every ``PROBE_S``, the first time
    ``PROBE_S`` after the wait began, so the many waits that end sooner never ask."""

    __slots__ = ("probe", "next")

    def __init__(self, probe: Callable[[], None]) -> None:
        self.probe = probe
        self.next = time.monotonic() + PROBE_S

    def __call__(self, now: float) -> None:
        if now > self.next:
            self.next = now + PROBE_S
            self.probe()


class Checker:
    """A deadline for one wait: calling it raises :class:`Abort` if the call failed and
    an error naming the sender once the deadline has passed; a wait on processor 1 also
    asks it for a device error now and then (:class:`Prober`)."""

    __slots__ = ("state", "sender", "what", "deadline", "prober")

    def __init__(self, state: CallState, sender: int, what: str) -> None:
        self.state, self.sender, self.what = state, sender, what
        self.deadline = state.deadline()
        probe = state.probe
        self.prober = Prober(probe) if probe is not None and sender == 1 else None

    def __call__(self) -> None:
        if self.state.error is not None:
            raise Abort
        now = time.monotonic()
        if now > self.deadline:
            raise self.state.timed_out(self.sender, self.what)
        if self.prober is not None:
            self.prober(now)
