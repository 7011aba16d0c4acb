"""Guards shared by the fuzz tests: a wall-clock limit and a peak-allocation limit per call.

A parser fed corrupt bytes must either succeed or raise a ``GmodiffError`` subtype, finish
quickly, and allocate memory in proportion to its input (never what a corrupt header claims).
``guarded_call`` checks all three for one call and turns a violation into a test failure.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, settings

from gmodiff.errors import GmodiffError

FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,  # the per-call wall-clock guard below is the real limit
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
    derandomize=True,  # same examples every run: a CI failure reproduces locally
    database=None,
)
"""Bounded, reproducible fuzz settings: ~200 examples keeps each target to a few seconds."""

CHILD_PEAK_RSS = '''
def peak_rss_mb():
    # VmHWM is this process's own peak; ru_maxrss would include the (large) pytest parent's
    # peak, which Linux carries over through fork + exec.
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
'''
"""Source of ``peak_rss_mb()`` for the child scripts that decode mutants in a separate process
(no braces inside, so it survives ``str.format``)."""


class CallTimedOut(AssertionError):
    """A guarded call ran past its wall-clock limit (a hang on corrupt input)."""


class _Alarm(BaseException):
    # A BaseException so a reader's broad ``except Exception`` cannot swallow the time-out.
    pass


HANG_SECONDS = 60.0  # guarded_call's floor: calls that run longer are hangs


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise ``CallTimedOut`` if the block runs past ``seconds`` (main thread, POSIX only)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals only reach the main thread; pytest and xdist run tests there
        return

    def _expired(signum, frame):
        raise _Alarm()

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Alarm:
        raise CallTimedOut(f"call did not finish within {seconds} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def guarded_call(fn: Callable[..., Any], *args: Any, seconds: float = 2.0,
                 max_bytes: int = 64 << 20, **kwargs: Any) -> tuple[Any, GmodiffError | None]:
    """Run ``fn``; return ``(result, None)`` or ``(None, error)`` for a ``GmodiffError``.

    Fails the test if ``fn`` raises anything else, runs longer than ``seconds``, or its peak
    traced allocation (Python objects and numpy buffers) exceeds ``max_bytes``.
    """
    tracemalloc.start()
    try:
        # A hang guard, not a speed bound: a loaded CI machine must not fail a correct reader.
        with time_limit(max(seconds, HANG_SECONDS)):
            try:
                return fn(*args, **kwargs), None
            except GmodiffError as err:
                message = str(err)
                assert message and "\n" not in message, f"error message not one line: {message!r}"
                return None, err
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak <= max_bytes, f"peak allocation {peak} bytes exceeds {max_bytes}"


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply byte edits ``(kind, position, value)``: 0 flip, 1 insert, 2 delete, 3 truncate."""
    out = bytearray(data)
    for kind, position, value in edits:
        if not out:
            break
        i = position % len(out)
        if kind == 0:
            out[i] = value
        elif kind == 1:
            out.insert(i, value)
        elif kind == 2:
            del out[i]
        else:
            del out[i:]
    return bytes(out)
