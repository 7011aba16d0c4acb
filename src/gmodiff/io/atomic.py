"""Atomic file writes: write to a temp file beside the target, then rename over it.

Temp files are named ``.<stem>.gm<host>p<pid>-<random>.part<suffix>``: the writer's host and
process id are in the name, so a later write into the same folder recognises the leftovers of a
writer that was killed (SIGKILL, power loss) and removes them. A SIGTERM / SIGHUP handler
(:func:`install_signal_cleanup`, installed by the command line) removes the temp files of the
writes in flight before the process dies; Ctrl-C (KeyboardInterrupt) unwinds through
:func:`atomic_path`, which removes its temp file itself.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import os
import re
import signal
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from gmodiff.errors import OutputError

_HOST_TAG = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]
_TEMP_NAME = re.compile(
    r"^\..*\.gm(?P<host>[0-9a-f]{6})p(?P<pid>\d+)-[A-Za-z0-9_]+\.part(\.[^.]*)?$")
_SAFE_STEM = re.compile(r"[^A-Za-z0-9_+-]")
_MAX_STEM = 40

_LIVE: set[Path] = set()
"""Temp files of writes in flight in this process (removed by the signal handler)."""
_LIVE_LOCK = threading.RLock()
"""Re-entrant: the signal handler runs on the main thread, possibly while it holds the lock."""
_GROUP: contextvars.ContextVar[list | None] = contextvars.ContextVar("atomic_group", default=None)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_prefix(target: Path) -> str:
    """The temp-name prefix for ``target``: ASCII only (a non-UTF-8 or odd target name must not
    reach libraries that want ``str`` paths), tagged with this host and process."""
    stem = _SAFE_STEM.sub("_", target.stem)[:_MAX_STEM] or "_"
    return f".{stem}.gm{_HOST_TAG}p{os.getpid()}-"


def _temp_suffix(target: Path) -> str:
    # Keep the extension: libraries that pick a format by extension must see the target's.
    extension = _SAFE_STEM.sub("_", target.suffix[1:])[:8]
    return f".part.{extension}" if extension else ".part"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except (OverflowError, OSError):
        return False
    return True


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Remove temp files in ``folder`` left by killed writers on this host; return them.

    Only names this module generates are touched, and only when their writer's process is gone
    (a live writer's temp file, or another host's on a shared folder, is left alone).
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name) if entry.name.startswith(".") else None
        if match is None or match["host"] != _HOST_TAG or _pid_alive(int(match["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # best effort: a leftover we cannot remove is no reason to fail this write
    return removed


def _remove_live_temps() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for tmp in live:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _on_signal(signum, frame) -> None:
    # Runs between bytecodes of the main thread: remove what we were writing, then die of the
    # same signal with its default action, so the exit status still says "killed by SIGTERM".
    _remove_live_temps()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def install_signal_cleanup(signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGHUP)) -> None:
    """Remove in-flight temp files when the process is terminated (call once, main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in signals:
        if signal.getsignal(signum) in (signal.SIG_DFL, None):
            signal.signal(signum, _on_signal)


@contextlib.contextmanager
def atomic_group() -> Iterator[None]:
    """Writes inside this block are renamed into place together, only if all of them succeed.

    Each :func:`atomic_path` inside keeps its temp file until the block ends; any failure removes
    every temp file, so either all outputs of a run appear or none (old files are kept).
    """
    if _GROUP.get() is not None:  # nested: the outer group commits
        yield
        return
    pending: list[tuple[Path, Path]] = []
    token = _GROUP.set(pending)
    try:
        yield
        _GROUP.reset(token)
        token = None
        for index, (tmp, target) in enumerate(pending):
            try:
                os.replace(tmp, target)
            except OSError as exc:
                _discard(tmp for tmp, _ in pending[index:])
                raise _output_error(exc, target) from exc
            _forget(tmp)
    except BaseException:
        _discard(tmp for tmp, _ in pending)
        raise
    finally:
        if token is not None:
            _GROUP.reset(token)


def _discard(temps) -> None:
    for tmp in temps:
        tmp.unlink(missing_ok=True)
        _forget(tmp)


def _forget(tmp: Path) -> None:
    with _LIVE_LOCK:
        _LIVE.discard(tmp)


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` only on success.

    The temp name keeps the target's suffix so libraries that pick a format by extension work.
    On any exception the temp file is removed, so no partial output is ever left behind.
    Inside :func:`atomic_group`, the rename waits for the end of the group.
    """
    target = Path(target)
    try:
        if target.parent and not target.parent.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(target.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=_temp_suffix(target),
                                        dir=target.parent)
    except OSError as exc:  # nothing written yet: a folder we may not create or write in
        raise _output_error(exc, target) from exc
    tmp = Path(tmp_name)
    with _LIVE_LOCK:
        _LIVE.add(tmp)
    os.close(fd)
    group = _GROUP.get()
    try:
        # mkstemp creates 0600 files; outputs should get the usual umask-derived mode instead.
        os.chmod(tmp, 0o666 & ~_current_umask())
        yield tmp
        if group is not None:
            group.append((tmp, target))
            return
        os.replace(tmp, target)
        _forget(tmp)
    except OSError as exc:
        _discard([tmp])
        raise _output_error(exc, target) from exc
    except BaseException:
        _discard([tmp])
        raise


def _output_error(exc: OSError, target: Path) -> OutputError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return OutputError("disk full while writing", target, "free some space and retry")
    return OutputError(f"could not write ({exc.strerror or exc})", target,
                       "check the folder exists and is writable")


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
