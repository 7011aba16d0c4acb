"""The ``gmodiff`` command line (typer).

Each sub-command lives in its own module and registers itself on ``app``. ``main`` turns every
user-fixable ``GmodiffError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import os
import sys

import typer

from gmodiff.cli.flags import as_flags
from gmodiff.errors import GmodiffError

app = typer.Typer(
    name="gmodiff",
    help="GMODiff: multi-exposure HDR reconstruction with one-step gain-map refinement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
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


def use_cores_politely() -> None:
    """Let torch's OpenMP threads sleep, not spin, between operators, unless the user chose.

    Spinning threads are fastest on an idle machine, but when anything else runs (a browser,
    another job) every parallel region waits for its descheduled thread: DaReg ran 5-10× slower
    on a loaded 2-core machine with the default policy, about as fast as idle with this one
    (``benchmarks/results/profile.md``). It must be set before torch is first imported, so here.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, mapping user errors to one stderr line and exit code 2."""
    from gmodiff.io.atomic import install_signal_cleanup
    from gmodiff.progress import mark_command_start

    mark_command_start()
    use_cores_politely()
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
