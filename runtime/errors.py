"""Typed errors. Library code raises these; only the CLI turns them into exit codes.

Each error carries the exit code the CLI should use and a hint telling the user
what to do next, so that every failure ends in one actionable line on stderr.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    RUNTIME_ERROR = 1
    USAGE_ERROR = 2
    NOT_FOUND = 3
    MODEL_FAILURE = 4
    INTERRUPTED = 130


class AskgptError(Exception):
    """Base class of every error askgpt reports to the user."""

    exit_code: ExitCode = ExitCode.RUNTIME_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(AskgptError):
    """The command line or a config value is wrong."""

    exit_code = ExitCode.USAGE_ERROR


class ModelNotFoundError(AskgptError):
    exit_code = ExitCode.NOT_FOUND


class InputNotFoundError(AskgptError):
    """A file named with -f/--file, -i/--image or --examples does not exist or cannot be read."""

    exit_code = ExitCode.NOT_FOUND


class InputReadError(AskgptError):
    """A named file exists but cannot be read: permissions, an I/O error (exit 1)."""

    exit_code = ExitCode.RUNTIME_ERROR


class OutputError(AskgptError):
    """The answer could not be written: a full disk, a failing device (exit 1)."""

    exit_code = ExitCode.RUNTIME_ERROR


class ImageError(AskgptError):
    """An image that cannot be used: not an image, damaged, too large, or an encoder failure."""

    exit_code = ExitCode.RUNTIME_ERROR


class ModelLoadError(AskgptError):
    exit_code = ExitCode.MODEL_FAILURE


class InferenceError(AskgptError):
    exit_code = ExitCode.MODEL_FAILURE


class ContextOverflowError(AskgptError):
    """The prompt does not fit the model's context; nothing is ever truncated silently."""

    exit_code = ExitCode.RUNTIME_ERROR

    def __init__(self, *, given: int, fits: int, n_ctx: int, reserved: int) -> None:
        super().__init__(
            f"the input is {given} tokens but only {fits} fit "
            f"(context {n_ctx} tokens, {reserved} kept for the answer)",
            hint="raise --ctx, lower -n/--max-tokens, or give a shorter input",
        )
        self.given = given
        self.fits = fits
        self.n_ctx = n_ctx
        self.reserved = reserved


class StructuredOutputError(AskgptError):
    """The answer is not the JSON that was asked for (exit 1). A streamed answer has been
    printed as it came; with --no-stream nothing is printed."""

    exit_code = ExitCode.RUNTIME_ERROR
