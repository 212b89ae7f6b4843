"""The CLI reference (docs/cli-reference.md) is checked against the app itself, so it cannot drift."""

from __future__ import annotations

import re

import typer

from askgpt.cli.app import create_app
from conftest import doc_page


def reference() -> str:
    # The page's opening, up to its first section (## Exit codes): the commands and the options table.
    return doc_page("docs/cli-reference.md").split("# CLI reference\n", 1)[1].split("\n## ", 1)[0]


def test_every_ask_option_is_in_the_readme_table_and_nothing_else() -> None:
    group = typer.main.get_command(create_app())
    ask = group.commands["ask"]  # type: ignore[attr-defined]
    # A flag pair's off side (--no-cite of --cite/--no-cite) is an option of its own.
    options = {opt for p in ask.params for opt in (*p.opts, *p.secondary_opts)
               if opt.startswith("-")} - {"--help", "-h"}
    table = reference()
    documented = (set(re.findall(r"`(-{1,2}[a-zA-Z][\w-]*)", table))
                  | set(re.findall(r", (-{1,2}[a-zA-Z][\w-]*)", table)))
    missing = sorted(o for o in options if o not in documented)
    assert missing == []
    group_options = {"--version", "--install-completion", "--show-completion", "-h", "--help"}
    stale = sorted(o for o in documented - options - group_options if o.startswith("--"))
    assert stale == []


def test_every_subcommand_is_named_in_the_reference() -> None:
    group = typer.main.get_command(create_app())
    table = reference()
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if name == "ask":
            continue
        assert f"askgpt {name}" in table, name
        for sub in getattr(command, "commands", {}):
            assert re.search(rf"askgpt {name}[^`]*\b{re.escape(sub)}\b", table), f"{name} {sub}"
