"""The Typer app: the root group, assembled from the command modules in cli/commands/.

Thin: commands parse, call the API and runtime layers, and render; every command runs
inside one error boundary (cli/boundary.py); the settings are loaded once per invocation,
when a command first needs them (cli/state.py).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from typer.completion import completion_init, install_callback, show_callback

from askgpt import __version__
from askgpt.cli.boundary import Commands
from askgpt.cli.commands import bench, cache, config, convert, logs, models, templates, vision
from askgpt.cli.commands.ask import ask_command
from askgpt.cli.commands.chat import chat_command
from askgpt.cli.routing import CURRENT_SHELL, DefaultCommandGroup
from askgpt.cli.state import CliState
from askgpt.runtime.engine.kinds import EngineFactory

HELP = """Ask a local model from the terminal, offline.

\b
  askgpt "What is the capital of France?"
  cat report.txt | askgpt "summarize this"
  askgpt -f notes.md -f todo.txt "what is overdue?"
  askgpt "describe this" -i photo.jpg
  askgpt -s "Translate English to French." -e "sea otter => loutre de mer" "cheese"
  git diff | askgpt -T commit-message
  askgpt --schema '{"city": "string"}' "the capital of France"
  askgpt -c "and in French?"
  askgpt chat
  askgpt models list

With no subcommand, the arguments are a question for `askgpt ask` (see `askgpt ask --help`
for every option). To ask a question that starts with a subcommand's name, write `askgpt ask ...`;
`askgpt help` and `askgpt version` alone are --help and --version.
"""

def _version(value: bool) -> None:
    if value:
        typer.echo(f"askgpt {__version__}")
        raise typer.Exit()


def _completion(action: Any) -> Any:
    """--install-completion / --show-completion [SHELL], done by Typer's own callbacks, which
    take True for the current shell (Typer's own options take no shell name)."""

    def run(ctx: typer.Context, param: typer.CallbackParam, shell: str | None) -> None:
        if shell is not None and not ctx.resilient_parsing:
            action(ctx, param, True if shell == CURRENT_SHELL else shell)

    return run


def create_app(engine_factory: EngineFactory | None = None) -> typer.Typer:
    """Build the CLI. Tests pass a scripted ``engine_factory``; the default loads llama.cpp lazily."""
    completion_init()  # Typer's completion scripts for bash, zsh, fish and PowerShell
    app = Commands(cls=DefaultCommandGroup, help=HELP, no_args_is_help=False, add_completion=False,
                   pretty_exceptions_enable=False, context_settings={"help_option_names": ["-h", "--help"]})

    @app.callback()
    def root(
        ctx: typer.Context,
        version: Annotated[bool | None, typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
        install_completion: Annotated[str | None, typer.Option(
            "--install-completion", metavar="[SHELL]", is_eager=True, expose_value=False,
            callback=_completion(install_callback), show_default=False,
            help="Install completion for SHELL (bash, zsh, fish, powershell; default: the current shell).")] = None,
        show_completion: Annotated[str | None, typer.Option(
            "--show-completion", metavar="[SHELL]", is_eager=True, expose_value=False,
            callback=_completion(show_callback), show_default=False,
            help="Show completion for SHELL (default: the current shell), to copy it or customize the "
                 "installation.")] = None,
    ) -> None:
        if ctx.obj is None:
            ctx.obj = CliState(os.environ, engine_factory)

    app.command("ask")(ask_command)
    app.add_typer(models.app, name="models")
    app.add_typer(convert.app, name="convert")
    app.add_typer(vision.app, name="vision")
    app.command("chat")(chat_command)
    app.add_typer(logs.app, name="logs")
    app.add_typer(templates.app, name="templates")
    app.add_typer(config.app, name="config")
    app.add_typer(cache.app, name="cache")
    app.add_typer(bench.app, name="bench")
    return app


def main() -> None:
    create_app()(prog_name="askgpt")
