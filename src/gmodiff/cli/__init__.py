"""The ``gmodiff`` command line (typer).

Each sub-command lives in its own module and registers itself on ``app``. ``main`` turns every
user-fixable ``GmodiffError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator

import typer

from gmodiff.errors import GmodiffError, as_flags

app = typer.Typer(
    name="gmodiff",
    help="GMODiff: multi-exposure HDR reconstruction with one-step gain-map refinement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from gmodiff import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(show_version: bool = typer.Option(False, "--version", callback=_print_version,
                                            is_eager=True, help="Print the gmodiff version and exit.")
          ) -> None:
    """GMODiff: multi-exposure HDR reconstruction with one-step gain-map refinement."""


@app.command()
def version() -> None:
    """Print the gmodiff version."""
    from gmodiff import __version__

    typer.echo(__version__)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to ``app``; a module that does not
    # exist yet (work in progress) is simply skipped.
    import importlib

    for name in ("simulate", "reconstruct", "evaluate", "train", "data", "serve"):
        try:
            importlib.import_module(f"gmodiff.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gmodiff.cli.{name}":
                raise


_register_commands()


_UNCAPTURED_COMMANDS = ("serve",)
"""Long-running commands whose warnings go to their console as they happen."""


@contextlib.contextmanager
def _held_warnings(argv: list[str] | None) -> Iterator[list[int]]:
    """Hold back Python warnings (numpy's RuntimeWarnings on odd input, library notes) while a
    command runs, so a failure prints its one ``error:`` line and nothing before it. The caller
    puts the exit code in the yielded list: on success the held warnings are shown at the end
    (numpy's floating-point RuntimeWarnings excepted: they are not the user's business)."""
    args = sys.argv[1:] if argv is None else argv
    command = next((a for a in args if not a.startswith("-")), None)
    status: list[int] = []
    if command in _UNCAPTURED_COMMANDS:
        yield status
        return
    with warnings.catch_warnings(record=True) as held:
        yield status
    if status == [0]:
        for w in held:
            if not issubclass(w.category, RuntimeWarning):
                warnings.showwarning(w.message, w.category, w.filename, w.lineno)


TORCH_START_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "THP_MEM_ALLOC_ENABLE": "1"}
"""Environment the CLI gives torch, read once when torch starts (so set before its import)."""


def set_torch_start_settings() -> None:
    """Give torch :data:`TORCH_START_SETTINGS` where the user has not set them, if not started.

    - ``OMP_WAIT_POLICY=PASSIVE``: OpenMP threads sleep, not spin, between operators. Spinning
      is fastest on an idle machine, but when anything else runs (a browser, another job) every
      parallel region waits for its descheduled thread: DaReg ran 5-10× slower on a loaded
      2-core machine with the default policy, about as fast as idle with this one.
    - ``THP_MEM_ALLOC_ENABLE=1`` (PyTorch's own switch): tensors of 2 MB and more go on
      transparent huge pages. glibc maps every large block afresh and unmaps it on free, so each
      full-size operator page-faults its output in and the kernel zeroes it 4 kB at a time: on a
      2-core AVX2 machine a 1×1 convolution 16→32 at 512² took 19 ms, 2.5 ms of it arithmetic;
      with huge pages DaReg at 832² ran 3.3 → 1.6 s and a 12-MP ``--no-refine`` run 137 → 82 s,
      bit for bit the same, peak memory +0.1 GB (``benchmarks/results/speed.md``). A no-op
      where the kernel's THP mode is ``never`` and off Linux.
    """
    if "torch" not in sys.modules:
        for name, value in TORCH_START_SETTINGS.items():
            os.environ.setdefault(name, value)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, mapping user errors to one stderr line and exit code 2."""
    with _held_warnings(argv) as status:
        code = _run(argv)
        status.append(code)
    return code


def _run(argv: list[str] | None) -> int:
    from gmodiff.io.atomic import install_signal_cleanup
    from gmodiff.progress import mark_command_start

    mark_command_start()
    set_torch_start_settings()
    install_signal_cleanup()  # a terminated run leaves no temp files behind
    try:
        # Standalone mode: typer/click print usage errors themselves and raise SystemExit;
        # our own errors are not click exceptions, so they propagate to here.
        app(args=argv, prog_name="gmodiff")
    except GmodiffError as err:
        print(f"error: {as_flags(str(err))}", file=sys.stderr)
        return err.exit_code
    except (MemoryError, RuntimeError, OSError) as exc:
        # Any allocation failure the method layer did not already explain (reading, aligning,
        # a classical merge, writing): one line, exit 2; outputs are atomic, so none is left.
        from gmodiff.memory import is_allocation_failure, out_of_memory

        if not is_allocation_failure(exc):
            raise
        print(f"error: {as_flags(str(out_of_memory(exc, 0, 0, None)))}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
