"""`--retrieval bm25|semantic|hybrid` and the config key `retrieval`: parsed by the Enum, checked
before any model loads, completed by the shell, and carried to the long-document strategies'
`LongContextConfig` on every path that reads documents: ask, chat, the Python API and
`bench needle`. Scripted engine: this is option plumbing; what each kind finds is measured
with the real model by the retrieval's own tests and `bench needle`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fakes import ScriptedFactory
from typer.testing import CliRunner

import askgpt.chat_session
import askgpt.session
from askgpt.assistant import Assistant
from askgpt.cli.app import create_app
from askgpt.runtime.documents.strategies import LongContext, LongContextConfig, Retrieval
from askgpt.runtime.errors import UsageError
from askgpt.runtime.store.config_file import set_value
from askgpt.runtime.store.settings import load_settings, resolve_paths

CHOICES = "bm25|semantic|hybrid"


@pytest.fixture
def configs(monkeypatch: pytest.MonkeyPatch) -> list[LongContextConfig]:
    """Every `LongContextConfig` the session and the chat hand to the strategies."""
    seen: list[LongContextConfig] = []

    class Spy(LongContext):
        def __init__(self, engine, config, **kwargs) -> None:  # type: ignore[no-untyped-def]
            seen.append(config)
            super().__init__(engine, config, **kwargs)

    monkeypatch.setattr(askgpt.session, "LongContext", Spy)
    monkeypatch.setattr(askgpt.chat_session, "LongContext", Spy)
    return seen


def _config_file(text: str) -> None:
    path = resolve_paths(os.environ).config_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def ask(args: list[str]) -> tuple[ScriptedFactory, object]:
    factory = ScriptedFactory()
    return factory, CliRunner().invoke(create_app(factory), ["--no-log", *args])


@pytest.mark.parametrize("value", ["bm25", "semantic", "hybrid", "HYBRID"])
def test_the_option_reaches_the_strategies(configs: list[LongContextConfig], value: str) -> None:
    _, result = ask(["--retrieval", value, "hi"])
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert [c.retrieval for c in configs] == [Retrieval(value.lower())]


def test_without_the_option_or_the_key_the_strategies_choose(configs: list[LongContextConfig]) -> None:
    _, result = ask(["hi"])
    assert result.exit_code == 0, result.stderr  # type: ignore[attr-defined]
    assert [c.retrieval for c in configs] == [None]  # hybrid where the embedding model is present, else bm25


def test_the_config_key_is_the_default_and_the_option_overrides_it(configs: list[LongContextConfig]) -> None:
    _config_file('retrieval = "semantic"\n')
    assert ask(["hi"])[1].exit_code == 0  # type: ignore[attr-defined]
    assert ask(["--retrieval", "bm25", "hi"])[1].exit_code == 0  # type: ignore[attr-defined]
    assert [c.retrieval for c in configs] == [Retrieval.SEMANTIC, Retrieval.BM25]


@pytest.mark.parametrize("args", [["--retrieval", "dense", "hi"], ["chat", "--retrieval", "dense"],
                                  ["bench", "needle", "--retrieval", "dense"]])
def test_a_bad_value_is_one_line_listing_the_choices_and_exit_2_before_any_model_loads(args: list[str]) -> None:
    factory, result = ask(args)
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert result.stderr.strip() == f"askgpt: error: --retrieval must be one of {CHOICES}, not 'dense'"  # type: ignore[attr-defined]
    assert factory.calls == []


def test_config_set_checks_the_value_and_lists_the_choices() -> None:
    paths = resolve_paths(os.environ)
    assert set_value(paths, "retrieval", "semantic").line() == 'retrieval = "semantic"'
    assert load_settings(os.environ).defaults.retrieval == "semantic"
    with pytest.raises(UsageError, match="'retrieval' must be one of bm25, semantic, hybrid, not \"dense\""):
        set_value(paths, "retrieval", "dense")
    result = CliRunner().invoke(create_app(ScriptedFactory()), ["config", "set", "retrieval", "dense"])
    assert result.exit_code == 2 and "must be one of bm25, semantic, hybrid" in result.stderr
    assert load_settings(os.environ).defaults.retrieval == "semantic"  # the file kept its good value


def test_a_bad_value_in_the_config_file_stops_asking_with_the_files_name() -> None:
    _config_file('retrieval = "dense"\n')
    factory, result = ask(["hi"])
    assert result.exit_code == 2  # type: ignore[attr-defined]
    assert "'retrieval' must be one of bm25, semantic, hybrid" in result.stderr  # type: ignore[attr-defined]
    assert "config.toml" in result.stderr and factory.calls == []  # type: ignore[attr-defined]


def test_chat_takes_the_option(configs: list[LongContextConfig]) -> None:
    factory = ScriptedFactory()
    result = CliRunner().invoke(create_app(factory), ["chat", "--no-log", "--retrieval", "semantic"],
                                input="first\nsecond\n")
    assert result.exit_code == 0, result.output
    assert [c.retrieval for c in configs] == [Retrieval.SEMANTIC, Retrieval.SEMANTIC]


def test_the_python_api_takes_a_name_or_the_enum(configs: list[LongContextConfig]) -> None:
    with Assistant(engine_factory=ScriptedFactory(), log=False) as a:
        a.ask("hi", retrieval="bm25").text()
        a.ask("hi", retrieval=Retrieval.HYBRID).text()
        a.chat(retrieval="semantic").ask("hi").text()
        with pytest.raises(UsageError, match=f"--retrieval must be one of {CHOICES}, not 'dense'"):
            a.ask("hi", retrieval="dense")
    assert [c.retrieval for c in configs] == [Retrieval.BM25, Retrieval.HYBRID, Retrieval.SEMANTIC]


def test_bench_needle_passes_the_kind_to_the_strategies(monkeypatch: pytest.MonkeyPatch) -> None:
    import askgpt.runtime.bench.needle as needle

    seen: list[LongContextConfig] = []

    def run_needle(engine, *, config: LongContextConfig, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(config)
        raise UsageError("stopped before measuring")  # the measurement is the benchmark's own test

    monkeypatch.setattr(needle, "run_needle", run_needle)
    for args in (["--retrieval", "semantic"], []):
        result = CliRunner().invoke(create_app(ScriptedFactory()),
                                    ["bench", "needle", "--kinds", "exact", "--read-tokens", "512", *args])
        assert "askgpt: error: stopped before measuring" in result.stderr, result.output
    assert [(c.retrieval, c.read_tokens) for c in seen] == [(Retrieval.SEMANTIC, 512), (None, 512)]


def test_the_copy_bias_key_reaches_every_path(configs: list[LongContextConfig],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import askgpt.runtime.bench.needle as needle
    from askgpt.runtime.documents.strategies import COPY_LOGIT

    def run_needle(engine, *, config: LongContextConfig, **kwargs):  # type: ignore[no-untyped-def]
        configs.append(config)
        raise UsageError("stopped before measuring")

    monkeypatch.setattr(needle, "run_needle", run_needle)

    def every_path() -> list[float]:
        configs.clear()
        assert ask(["hi"])[1].exit_code == 0  # type: ignore[attr-defined]
        CliRunner().invoke(create_app(ScriptedFactory()), ["chat", "--no-log"], input="first\n")
        with Assistant(engine_factory=ScriptedFactory(), log=False) as a:
            a.ask("hi").text()
            a.chat().ask("hi").text()
        CliRunner().invoke(create_app(ScriptedFactory()), ["bench", "needle", "--kinds", "exact"])
        return [c.copy_logit for c in configs]

    assert every_path() == [COPY_LOGIT] * 5 and COPY_LOGIT > 0
    assert set_value(resolve_paths(os.environ), "copy_bias", "false").value is False
    assert every_path() == [0.0] * 5
    configs.clear()
    CliRunner().invoke(create_app(ScriptedFactory()), ["bench", "needle", "--kinds", "exact", "--copy-bias"])
    assert [c.copy_logit for c in configs] == [COPY_LOGIT]  # the bench's flag over the key
    with pytest.raises(UsageError, match="true or false"):
        set_value(resolve_paths(os.environ), "copy_bias", "maybe")


def test_the_values_complete(tmp_path: Path) -> None:
    env = {"_ASKGPT_COMPLETE": "complete_bash"}
    for line, expected in [("askgpt --retrieval ", ["bm25", "semantic", "hybrid"]),
                           ("askgpt chat --retrieval h", ["hybrid"]),
                           ("askgpt bench needle --retrieval s", ["semantic"])]:
        words = line.split(" ")
        result = CliRunner().invoke(create_app(ScriptedFactory()), [], prog_name="askgpt",
                                    env={**env, "COMP_WORDS": line, "COMP_CWORD": str(len(words) - 1)})
        assert result.exit_code == 0, result.stderr
        assert result.stdout.split() == expected
