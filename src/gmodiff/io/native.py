"""Keep native decoders quiet: what they print is captured, not shown.

OpenEXR prints to file descriptors 2 (and 1) from C++, libpng to 2, and tifffile logs warnings
through ``logging``; any of them would break the command line's one-line error promise (and a
clean stdout). Readers and writers that call such libraries run inside
:func:`captured_native_output` and fold the captured text into their own error message when they
fail (:func:`with_native_detail`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

NATIVE_LOGGERS = ("tifffile", "PIL", "imageio")
"""Python loggers of image libraries whose warnings are captured like native stderr."""
MAX_DETAIL = 160
"""Characters of captured output kept in an error message."""

_LOCK = threading.RLock()


@dataclass
class Captured:
    """What the libraries said while :func:`captured_native_output` was active."""

    lines: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """All captured lines, joined."""
        return "\n".join(self.lines)

    def detail(self) -> str:
        """The first captured line, shortened for an error message ('' when quiet)."""
        first = next((line.strip() for line in self.lines if line.strip()), "")
        return first[:MAX_DETAIL]


class _ListHandler(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.sink.append(record.getMessage())
        except Exception:  # a malformed log record must not break decoding
            pass


@contextlib.contextmanager
def _capture_loggers(sink: list[str]) -> Iterator[None]:
    handler = _ListHandler(sink)
    saved = []
    for name in NATIVE_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate))
        logger.addHandler(handler)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in saved:
            logger.removeHandler(handler)
            logger.propagate = propagate


def _flush_python_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


@contextlib.contextmanager
def _capture_fd(fd: int, sink: list[str]) -> Iterator[None]:
    try:
        saved = os.dup(fd)
    except OSError:  # the descriptor is closed: nothing to protect
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as buffer:
        os.dup2(buffer.fileno(), fd)
        try:
            yield
        finally:
            _flush_python_streams()
            os.dup2(saved, fd)
            os.close(saved)
            buffer.seek(0)
            text = buffer.read(64 * 1024).decode("utf-8", "replace")
            sink.extend(line for line in text.splitlines() if line.strip())


@contextlib.contextmanager
def captured_native_output() -> Iterator[Captured]:
    """Capture what native code prints (fds 1 and 2), library log records and Python warnings
    inside the block.

    ``captured.lines`` is filled when the block ends, also when it raises, so an ``except``
    around the ``with`` can fold the text into its error. File-descriptor capture only happens
    on the main thread (the redirection is process-wide); elsewhere only log records and warnings
    are captured.
    """
    captured = Captured()
    with _LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with _capture_loggers(captured.lines):
                if threading.current_thread() is threading.main_thread():
                    _flush_python_streams()
                    with _capture_fd(1, captured.lines), _capture_fd(2, captured.lines):
                        yield captured
                else:
                    yield captured
        finally:
            captured.lines.extend(str(w.message) for w in caught)


def with_native_detail(message: str, captured: Captured) -> str:
    """``message`` plus what the library printed, if anything (one line)."""
    detail = captured.detail()
    if not detail or detail in message:
        return message
    return f"{message}; decoder said: {detail}"
