"""`askgpt config path|show|set|unset|edit`."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from askgpt.cli.boundary import Commands
from askgpt.cli.options import JsonOpt
from askgpt.cli.state import state
from askgpt.cli.terminal.render import Messages, print_result
from askgpt.runtime.store.settings import Paths

app = Commands(help="The config file: where it is, every effective value, and changes to it.")


@app.command("path")
def config_path(ctx: typer.Context) -> None:
    """Where the config file is (it need not exist)."""
    typer.echo(str(state(ctx).paths.config_file))


@app.command("show")
def config_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Every key's effective value and where it comes from: environment, config file or default."""
    run = state(ctx)
    show(run.paths, dict(run.env), as_json=as_json)


# A VALUE such as -5 is a value to check, not an unknown option.
@app.command("set", context_settings={"ignore_unknown_options": True})
def config_set(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="KEY", help="A config key (askgpt config show lists them).")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="Its new value, checked before it is written.")],
) -> None:
    """Set KEY to VALUE in the config file."""
    from askgpt.runtime.store.config_file import set_value

    changed = set_value(state(ctx).paths, key, value)
    messages = Messages(sys.stderr, quiet=False)
    for line in changed.remaining:
        messages.warn(f"the file still has a problem: {line}")
    typer.echo(changed.line())


@app.command("unset")
def config_unset(ctx: typer.Context, key: Annotated[str, typer.Argument(metavar="KEY", help="A config key.")]) -> None:
    """Remove KEY from the config file (its default applies again)."""
    from askgpt.runtime.store.config_file import unset_value

    typer.echo(f"removed {key}" if unset_value(state(ctx).paths, key) else f"{key} was not set")


@app.command("edit")
def config_edit(ctx: typer.Context) -> None:
    """Open the config file in $VISUAL or $EDITOR, then check it."""
    run = state(ctx)
    edit(run.paths, dict(run.env))


def show(paths: Paths, env: dict[str, str], *, as_json: bool, messages: Messages | None = None) -> None:
    """Every key as TOML would write it. A broken file is reported on stderr (what and where)
    and its bad values are shown as what applies instead; the command still succeeds."""
    from askgpt.runtime.store.config_file import effective
    from askgpt.runtime.store.settings import SECRET_KEYS, toml_value

    rows, found = effective(paths, env)
    messages = messages or Messages(sys.stderr, quiet=False)
    for line in found.messages():
        messages.warn(f"{line}; {'the file is' if found.syntax_error else 'that value is'} not used")
    data = {r.key: {"value": r.value, "source": r.source} for r in rows}
    width = max(len(r.key) for r in rows)
    shown = {r.key: "(not set)" if r.value is None else str(r.value) if r.key in SECRET_KEYS else toml_value(r.value)
             for r in rows}
    value_width = max(24, *(len(v) for v in shown.values() if len(v) <= 40))
    text = "\n".join(f"{r.key:<{width}} = {shown[r.key]:<{value_width}} ({r.source})" for r in rows)
    print_result(data, f"# {paths.config_file}\n{text}", as_json=as_json)


def edit(paths: Paths, env: Mapping[str, str], messages: Messages | None = None) -> None:
    """Open a copy of the file in $VISUAL / $EDITOR (vi otherwise); a valid result replaces
    the file. An invalid one does only if the user says so at a terminal; otherwise the
    last valid file stays and the edit is kept beside it (exit 2)."""
    import shlex
    import subprocess

    from askgpt.runtime.errors import UsageError
    from askgpt.runtime.store.config_file import edit_config

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
