"""The README's CLI reference is checked against the app itself, so it cannot drift."""

from __future__ import annotations

import re

import typer
from conftest import REPO

from askgpt.cli.app import create_app


def reference() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("## CLI reference", 1)[1].split("\n## ", 1)[0]


def test_every_ask_option_is_in_the_readme_table_and_nothing_else() -> None:
    group = typer.main.get_command(create_app())
    ask = group.commands["ask"]  # type: ignore[attr-defined]
    options = {opt for p in ask.params for opt in p.opts if opt.startswith("-")} - {"--help", "-h"}
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
