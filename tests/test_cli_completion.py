"""Shell completion and the CLI's shared machinery: subcommands, option values and model names
complete; `--show-completion SHELL` prints that shell's script; closed choices are checked by
the option's Enum; the settings are read once per invocation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakes import ScriptedFactory
from typer.testing import CliRunner

from askgpt.cli import state as cli_state
from askgpt.cli.app import create_app
from askgpt.runtime.models.discovery import Registry
from askgpt.runtime.store.settings import resolve_paths


def bash_complete(line: str) -> list[str]:
    """What bash completion offers for the last word of ``line`` (empty after a trailing space)."""
    words = line.split(" ")
    env = {"_ASKGPT_COMPLETE": "complete_bash", "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)}
    result = CliRunner().invoke(create_app(ScriptedFactory()), [], env=env, prog_name="askgpt")
    assert result.exit_code == 0, result.stderr
    return result.stdout.split()


def zsh_complete(line: str) -> str:
    env = {"_ASKGPT_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": line}
    result = CliRunner().invoke(create_app(ScriptedFactory()), [], env=env, prog_name="askgpt")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_the_first_word_completes_to_subcommands() -> None:
    assert bash_complete("askgpt mo") == ["models"]
    assert set(bash_complete("askgpt ")) >= {"ask", "chat", "models", "convert", "vision", "logs", "templates",
                                             "config", "cache", "bench"}
    assert '"models":"Manage models."' in zsh_complete("askgpt mo")


def test_subcommands_of_every_group_complete() -> None:
    assert bash_complete("askgpt models i") == ["info"]
    assert bash_complete("askgpt bench ") == ["speed", "startup", "needle", "icl"]
    assert bash_complete("askgpt convert c") == ["clip"]


def test_options_complete_at_the_top_level_and_in_commands() -> None:
    # `askgpt --model NAME "..."` is an ask, so ask's options are offered before any command.
    assert "--strategy" in bash_complete("askgpt --str")
    assert "--version" in bash_complete("askgpt --ver")
    assert sorted(bash_complete("askgpt chat --tem")) == ["--temperature", "--template"]


@pytest.mark.parametrize(("line", "expected"), [
    ("askgpt --strategy ", ["auto", "stuff", "retrieve", "map-reduce", "refine"]),
    ("askgpt --strategy m", ["map-reduce"]),
    ("askgpt ask --ocr o", ["on", "off"]),
    ("askgpt --image-mode ", ["text", "embed", "both"]),
    ("askgpt --kv-type ", ["f16", "q8_0", "f32"]),
    ("askgpt --select d", ["diverse"]),
    ("askgpt templates save x --select r", ["random"]),
])
def test_closed_choices_complete_to_their_values(line: str, expected: list[str]) -> None:
    assert bash_complete(line) == expected


def test_model_names_complete_from_every_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = resolve_paths(os.environ)
    paths.models_dir.mkdir(parents=True)
    (paths.models_dir / "tiny-local.gguf").write_bytes(b"GGUF")
    added = tmp_path / "elsewhere.gguf"
    added.write_bytes(b"GGUF")
    Registry(paths.data_dir).add("my-added", added)
    hub = tmp_path / "hub"
    snapshot = hub / "models--org--repo-GGUF" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "found.gguf").write_bytes(b"GGUF")
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))

    offered = bash_complete("askgpt -m ")
    assert {"tiny-local", "my-added", "hf:org/repo-GGUF/found.gguf"} <= set(offered)
    assert bash_complete("askgpt -m tiny") == ["tiny-local"]
    assert bash_complete("askgpt chat --model my") == ["my-added"]
    assert bash_complete("askgpt models info tiny") == ["tiny-local"]
    assert "tiny-local" in zsh_complete("askgpt bench speed -m ")


def test_a_broken_registry_still_completes_the_other_names() -> None:
    paths = resolve_paths(os.environ)
    paths.models_dir.mkdir(parents=True)
    (paths.models_dir / "tiny-local.gguf").write_bytes(b"GGUF")
    Registry(paths.data_dir).path.parent.mkdir(parents=True, exist_ok=True)
    Registry(paths.data_dir).path.write_text("{not json")
    assert bash_complete("askgpt -m tiny") == ["tiny-local"]


@pytest.mark.parametrize(("args", "start"), [
    (["--show-completion", "zsh"], "#compdef askgpt"),
    (["--show-completion=zsh"], "#compdef askgpt"),
    (["--show-completion", "bash"], "_askgpt_completion()"),
    (["--show-completion", "fish"], "complete --command askgpt"),
])
def test_show_completion_prints_the_named_shells_script(args: list[str], start: str) -> None:
    result = CliRunner().invoke(create_app(ScriptedFactory()), args, prog_name="askgpt")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(start), result.stdout[:200]


@pytest.mark.parametrize(("args", "message"), [
    (["--kv-type", "q4_0", "hi"], "askgpt: error: --kv-type must be one of f16|q8_0|f32, not 'q4_0'"),
    (["--kv-type", "F16", "hi"], "askgpt: error: --kv-type must be one of f16|q8_0|f32, not 'F16'"),
    (["--strategy", "guess", "hi"],
     "askgpt: error: --strategy must be one of auto|stuff|retrieve|map-reduce|refine, not 'guess'"),
    (["--select", "best", "--shots", "1", "-e", "a => b", "hi"],
     "askgpt: error: --select must be one of random|similar|diverse, not 'best'"),
    (["templates", "save", "t", "-s", "x", "--select", "best"],
     "askgpt: error: --select must be one of random|similar|diverse, not 'best'"),
])
def test_a_bad_choice_is_one_line_and_exit_2_before_any_model_loads(args: list[str], message: str) -> None:
    factory = ScriptedFactory()
    result = CliRunner().invoke(create_app(factory), args)
    assert result.exit_code == 2
    assert result.stderr.strip() == message
    assert result.stdout == "" and factory.calls == []


def test_choices_other_than_the_kv_type_ignore_case() -> None:
    factory = ScriptedFactory()
    result = CliRunner().invoke(create_app(factory), ["--strategy", "STUFF", "--ocr", "Off", "--image-mode", "TEXT",
                                                      "hi"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "scripted answer\n"


def test_settings_are_read_once_per_invocation(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[object] = []
    load = cli_state.load_settings

    def counting(env):  # type: ignore[no-untyped-def]
        reads.append(env)
        return load(env)

    monkeypatch.setattr(cli_state, "load_settings", counting)
    app = create_app(ScriptedFactory())
    assert CliRunner().invoke(app, ["hi"]).exit_code == 0
    assert CliRunner().invoke(app, ["logs", "--json"]).exit_code == 0
    assert len(reads) == 2  # one per invocation
    assert CliRunner().invoke(app, ["config", "path"]).exit_code == 0
    assert len(reads) == 2  # the folders alone need no config file
