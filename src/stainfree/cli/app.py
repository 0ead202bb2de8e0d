"""The typer application, logging setup and interrupt handling shared by every command."""

from __future__ import annotations

import logging
import sys

import typer

from ..utils import StainfreeError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Label-free single-cell image analysis: import cells, train and evaluate classifiers honestly.",
)


#: Settings of the current invocation that outlive the callback (``-v`` for :func:`error_exit`).
_state = {"verbose": False}


@app.callback()
def _setup(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debugging detail."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only show warnings and errors."),
):
    _state["verbose"] = verbose
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("stainfree")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class Interrupted(BaseException):
    """Ctrl-C, raised past click (which would otherwise swallow it silently)."""


def _interrupt(signum, frame):
    raise Interrupted()


def error_exit(exc: BaseException) -> tuple[str, int] | None:
    """The line a user sees for an error, and the exit status; ``None`` for a defect (traceback).

    With ``stainfree -v``, the line comes after the full traceback of the error and of the
    exceptions that caused it, for a bug report.

    >>> error_exit(StainfreeError("x.cells: not a CellSet"))
    ('error: x.cells: not a CellSet', 1)
    >>> error_exit(FileNotFoundError(2, "No such file or directory", "a.tif"))
    ('error: a.tif: No such file or directory', 1)
    >>> error_exit(Interrupted())
    ('interrupted: no partial output was left behind', 130)
    """
    if isinstance(exc, StainfreeError | OSError):
        line = f"error: {exc}"
        if isinstance(exc, OSError):
            where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
            line = f"error: {where}{exc.strerror or exc}"
        if _state["verbose"]:
            import traceback

            line = "".join(traceback.format_exception(exc)) + line
        return line, 1
    if isinstance(exc, Interrupted):
        return "interrupted: no partial output was left behind", 130
    return None


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit status 1."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    try:
        app(args=argv)
    except (StainfreeError, OSError, Interrupted) as exc:
        message, status = error_exit(exc)
        typer.echo(message, err=True)
        if isinstance(exc, Interrupted):
            # the outputs are cleaned up by now; leave without the interpreter's teardown, which
            # can crash (SIGSEGV) when numba or OpenMP threads were stopped in the middle of a call
            import logging
            import os

            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        sys.exit(status)
