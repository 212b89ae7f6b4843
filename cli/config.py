"""`askgpt config path|show|set|unset|edit`."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from askgpt.cli.render import Messages, print_result
from askgpt.runtime.errors import UsageError
from askgpt.runtime.store.config_file import edit_config, effective, set_value, unset_value
from askgpt.runtime.store.settings import SECRET_KEYS, Paths, toml_value, value_problem


def run_show(paths: Paths, env: dict[str, str], *, as_json: bool, messages: Messages | None = None) -> None:
    """Every key as TOML would write it. A broken file is reported on stderr (what and where)
    and its bad values are shown as what applies instead; the command still succeeds."""
    rows, state = effective(paths, env)
    messages = messages or Messages(sys.stderr, quiet=False)
    for line in state.messages():
        messages.warn(f"{line}; {'the file is' if state.syntax_error else 'that value is'} not used")
    data = {r.key: {"value": r.value, "source": r.source} for r in rows}
    width = max(len(r.key) for r in rows)
    shown = {r.key: "(not set)" if r.value is None else str(r.value) if r.key in SECRET_KEYS else toml_value(r.value)
             for r in rows}
    value_width = max(24, *(len(v) for v in shown.values() if len(v) <= 40))
    text = "\n".join(f"{r.key:<{width}} = {shown[r.key]:<{value_width}} ({r.source})" for r in rows)
    print_result(data, f"# {paths.config_file}\n{text}", as_json=as_json)


def run_set(paths: Paths, key: str, value: str, messages: Messages | None = None) -> str:
    changed = set_value(paths, key, value)
    messages = messages or Messages(sys.stderr, quiet=False)
    for line in changed.remaining:
        messages.warn(f"the file still has a problem: {line}")
    return changed.line()


def run_unset(paths: Paths, key: str) -> str:
    return f"removed {key}" if unset_value(paths, key) else f"{key} was not set"


def run_edit(paths: Paths, env: dict[str, str], messages: Messages | None = None) -> None:
    """Open a copy of the file in $VISUAL / $EDITOR (vi otherwise); a valid result replaces
    the file. An invalid one does only if the user says so at a terminal; otherwise the
    last valid file stays and the edit is kept beside it (exit 2)."""
    editor = env.get("VISUAL") or env.get("EDITOR") or "vi"
    messages = messages or Messages(sys.stderr, quiet=False)

    def run_editor(path: Path) -> None:
        try:
            subprocess.run([*shlex.split(editor), str(path)], check=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise UsageError(f"the editor {editor!r} failed: {exc}", hint="set $EDITOR") from exc

    def confirm(problems: list[str]) -> bool:
        for line in problems:
            messages.warn(line)
        sys.stderr.write(f"save {paths.config_file.name} anyway (askgpt refuses to start with it)? [y/N] ")
        sys.stderr.flush()
        try:
            return input().strip().lower() in {"y", "yes"}
        except EOFError:
            return False

    interactive = sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()
    result = edit_config(paths, run_editor, confirm if interactive else None)
    if result.rejected is not None:
        raise UsageError(f"{'; '.join(result.problems)}; kept the last {paths.config_file.name}, "
                         f"your edit is in {result.rejected}",
                         hint="fix it with askgpt config edit")
    if result.saved and result.problems:
        messages.warn(f"saved {paths.config_file.name} with problems askgpt refuses to start with")
    if result.unchanged:
        # An editor that returns at once (`code` without --wait) edits a draft askgpt has
        # already read back: say so rather than let a later save go nowhere.
        messages.warn("the editor returned without a change; nothing was saved (an editor that returns "
                      "at once needs its wait flag, e.g. EDITOR='code --wait')")


T = TypeVar("T")


def checked_option(key: str) -> Callable[[T | None], T | None]:
    """A typer callback checking an option against config key ``key``'s entry in the one
    table (settings.KEYS): ``-t nan``, ``-t inf`` and out-of-range values are refused as
    they are in the config file."""
    import typer

    def check(value: T | None) -> T | None:
        if value is not None and (problem := value_problem(key, value)) is not None:
            raise typer.BadParameter(f"{problem}, not {toml_value(value)}")
        return value

    return check


def environ() -> dict[str, str]:
    return dict(os.environ)
