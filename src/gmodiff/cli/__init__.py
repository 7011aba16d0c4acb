"""The ``gmodiff`` command line (typer).

Each sub-command lives in its own module and registers itself on ``app``. ``main`` turns every
user-fixable ``GmodiffError`` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import sys

import typer

from gmodiff.errors import GmodiffError

app = typer.Typer(
    name="gmodiff",
    help="GMODiff: multi-exposure HDR reconstruction with one-step gain-map refinement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the gmodiff version."""
    from gmodiff import __version__

    typer.echo(__version__)


def _register_commands() -> None:
    # Imported for their side effect of adding commands to ``app``; a module that does not
    # exist yet (work in progress) is simply skipped.
    import importlib

    for name in ("simulate", "reconstruct", "evaluate", "train", "data"):
        try:
            importlib.import_module(f"gmodiff.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gmodiff.cli.{name}":
                raise


_register_commands()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, mapping user errors to one stderr line and exit code 2."""
    try:
        app(args=argv, standalone_mode=False)
    except GmodiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except SystemExit as exc:
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # click usage errors etc.
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            return exc.exit_code
        if isinstance(exc, click.exceptions.Abort):
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
