"""The root group: ``askgpt PROMPT...`` is ``askgpt ask PROMPT...`` unless the first argument
names a subcommand, so ``askgpt "hi"`` and ``askgpt models list`` both work."""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from typing import Any

from typer.core import TyperGroup

from askgpt.cli.boundary import exit_code_of

_GROUP_OPTIONS = frozenset({"-h", "--help", "--version", "--install-completion", "--show-completion"})
# `askgpt help` and `askgpt version` alone are what a user means by them, not questions for
# the model (`askgpt ask help` asks the word).
_WORD_COMMANDS = {"help": "--help", "version": "--version"}


# `--show-completion` alone means the shell askgpt runs in; `--show-completion zsh` names one.
CURRENT_SHELL = "current"
_SHELLS = frozenset({"bash", "zsh", "fish", "powershell", "pwsh"})
_COMPLETION_OPTIONS = frozenset({"--install-completion", "--show-completion"})


class DefaultCommandGroup(TyperGroup):
    """Routes ``askgpt ARGS`` to ``askgpt ask ARGS`` unless ARGS starts with a subcommand."""

    default_command = "ask"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subcommand_metavar = "PROMPT... | COMMAND [ARGS]..."

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if len(args) == 1 and args[0] in _WORD_COMMANDS:
            args = [_WORD_COMMANDS[args[0]]]
        if args and args[0] in _COMPLETION_OPTIONS and (len(args) == 1 or args[1] not in _SHELLS):
            args = [args[0], CURRENT_SHELL, *args[1:]]
        # Completing the first word (`askgpt mo<TAB>`) offers the subcommands, not ask's prompt.
        completing_first = ctx.resilient_parsing and not args
        if not completing_first and (not args or (args[0] not in self.commands
                                                  and args[0].split("=", 1)[0] not in _GROUP_OPTIONS)):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def shell_complete(self, ctx: Any, incomplete: str) -> list[Any]:
        """The subcommands and the group's options, and, since ``askgpt -m NAME "..."`` is
        an ask, ask's options too."""
        found = super().shell_complete(ctx, incomplete)
        if incomplete.startswith("-") and self.default_command in self.commands:
            seen = {item.value for item in found}
            found += [item for item in self.commands[self.default_command].shell_complete(ctx, incomplete)
                      if item.value not in seen]
        return found

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        """Click's own errors (bad option, bad value) also end in one line on stderr."""
        code = exit_code_of(functools.partial(super().main, args, prog_name, complete_var, standalone_mode=False,
                                              windows_expand_args=windows_expand_args, **extra))
        if standalone_mode:
            sys.exit(code)
        return code
