"""The error boundary: the one place errors become exit codes and a single line on stderr.

Every command runs inside it: `Commands` (the sub-apps' Typer) wraps each command and
callback it registers, and `exit_code_of` does the same for Click's own errors (a bad
option, a bad value) around the whole invocation.
"""

from __future__ import annotations

import errno
import functools
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, TypeVar

import typer
from typer.core import TyperGroup

from askgpt.cli.terminal.render import Messages, format_error
from askgpt.runtime.errors import AskgptError, ExitCode, OutputError
from askgpt.runtime.store.settings import truthy

F = TypeVar("F", bound=Callable[..., Any])


def click_module() -> ModuleType:
    """The Click that Typer runs on: the click package, or the copy newer Typers vendor."""
    core = TyperGroup.__mro__[1].__module__  # "click.core" or "typer._click.core"
    return importlib.import_module(core.rsplit(".", 1)[0])


def usage_error(message: str) -> Exception:
    """A Click error printed as exactly ``askgpt: error: MESSAGE`` with exit code 2, the way
    askgpt's own usage errors are (Click's UsageError would add a pointer to --help)."""
    error = click_module().exceptions.ClickException(message)
    error.exit_code = int(ExitCode.USAGE_ERROR)
    return error


# A disk (or device) that takes no more: stdout sent to a full disk or /dev/full, a file
# askgpt writes. One line, exit 1; not an internal error.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's own flush at exit neither fails again
    nor prints a second complaint about a stream that cannot be written."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (a test's capture): nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def flush_stdout(code: int) -> int:
    """Output still buffered is written now, where a failure is one line, not at exit.
    A closed pipe is no error (`askgpt logs | head -1`); a full disk is (exit 1)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except OSError as exc:
        silence_stdout()
        typer.echo(f"askgpt: error: cannot write to stdout: {exc.strerror or exc}", err=True)
        return int(ExitCode.RUNTIME_ERROR) if code == 0 else code
    except ValueError:  # stdout already closed
        pass
    return code


def debug_enabled(flag: bool) -> bool:
    # Read before settings load, so that a broken config file can still be debugged.
    return flag or truthy(os.environ.get("ASKGPT_DEBUG"))


@contextmanager
def error_boundary(messages: Messages, *, debug: bool) -> Iterator[None]:
    """A command's errors: one line on stderr and the documented exit code."""
    try:
        yield
    except AskgptError as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, OutputError):
            silence_stdout()
        messages.line(format_error(exc))
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        messages.line("askgpt: interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:
        # The reader went away (`askgpt ... | head`): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        silence_stdout()
        raise typer.Exit(int(ExitCode.OK)) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: still one line, traceback on request
        if debug:
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
            try:  # output still held for stdout would fail again at exit
                sys.stdout.flush()
            except OSError:
                silence_stdout()
            messages.line(f"askgpt: error: cannot write: {exc.strerror or exc}")
        else:
            messages.line(f"askgpt: internal error: {type(exc).__name__}: {exc}; rerun with --debug for a traceback")
        raise typer.Exit(int(ExitCode.RUNTIME_ERROR)) from None


def guarded(command: F) -> F:
    """``command`` run inside the error boundary; a ``debug`` parameter (--debug), where the
    command has one, also asks for tracebacks."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        with error_boundary(Messages(sys.stderr, quiet=False), debug=debug_enabled(bool(kwargs.get("debug")))):
            return command(*args, **kwargs)

    return run  # type: ignore[return-value]


class Commands(typer.Typer):
    """A Typer app whose commands and callback each run inside the error boundary.
    The decorators return the function itself, so that one command can be registered
    in two groups (`vision setup` is `convert clip`)."""

    def __init__(self, *, help: str, no_args_is_help: bool = True, **kwargs: Any) -> None:
        super().__init__(help=help, no_args_is_help=no_args_is_help, rich_markup_mode=None, **kwargs)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:  # type: ignore[override]
        register = super().command(name, **kwargs)

        def decorator(function: F) -> F:
            register(guarded(function))
            return function

        return decorator

    def callback(self, **kwargs: Any) -> Callable[[F], F]:  # type: ignore[override]
        register = super().callback(**kwargs)

        def decorator(function: F) -> F:
            register(guarded(function))
            return function

        return decorator


def exit_code_of(invoke: Callable[[], Any]) -> int:
    """Run a whole invocation (Click in non-standalone mode): Click's own errors (bad
    option, bad value) also end in one line on stderr; returns the exit code."""
    errors = click_module().exceptions
    no_args_help = getattr(errors, "NoArgsIsHelpError", ())
    # Some Typer versions' vendored Click has no Abort of its own (typer.Abort is it).
    aborts = (getattr(errors, "Abort", typer.Abort), typer.Abort)
    try:
        rv = invoke()
        code = rv if isinstance(rv, int) else 0
    except no_args_help as exc:  # `askgpt models`: show its help
        exc.show()
        code = exc.exit_code
    except errors.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "askgpt"
        typer.echo(f"askgpt: error: {exc.format_message().rstrip('.')}; see '{where} --help'", err=True)
        code = exc.exit_code
    except errors.ClickException as exc:
        typer.echo(f"askgpt: error: {exc.format_message()}", err=True)
        code = exc.exit_code
    except aborts:  # Ctrl-C while click itself was running
        typer.echo("askgpt: interrupted", err=True)
        code = int(ExitCode.INTERRUPTED)
    except BrokenPipeError:  # outside a command's error boundary (--help, --version)
        silence_stdout()
        code = int(ExitCode.OK)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        silence_stdout()
        typer.echo(f"askgpt: error: cannot write: {exc.strerror or exc}", err=True)
        code = int(ExitCode.RUNTIME_ERROR)
    return flush_stdout(code)
