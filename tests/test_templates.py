"""Saved prompt templates: the store, the CLI, the built-in ones on the real model,
and the README's recipes run as written."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from askgpt.runtime.errors import ExitCode, InputNotFoundError, UsageError
from askgpt.runtime.prompting.request import Example, Request
from askgpt.runtime.store.templates import BUILTIN, Template, TemplateStore, apply_template, template_words
from conftest import ASKGPT_BIN, REPO, doc_block


def test_store_saves_lists_overrides_and_removes(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path / "templates")
    assert store.names() == sorted(BUILTIN)
    store.save(Template("haiku", system="Answer with a haiku.", examples=(Example("a", "b"),), suffix="Short."))
    assert store.get("haiku") == Template("haiku", "Answer with a haiku.", (Example("a", "b"),), "Short.")
    assert "haiku" in store.names()
    store.save(Template("translate", system="Translate into German."))  # a user's beats a built-in
    assert store.get("translate").system == "Translate into German." and not store.get("translate").builtin
    store.remove("translate")
    assert store.get("translate") == BUILTIN["translate"]
    with pytest.raises(InputNotFoundError):
        store.remove("translate")
    with pytest.raises(UsageError):
        store.save(Template("../evil", system="x"))
    with pytest.raises(InputNotFoundError):
        store.get("nope")
    (tmp_path / "templates" / "broken.json").write_text("{not json")
    with pytest.raises(UsageError, match="not valid"):
        store.get("broken")


def test_applying_a_template() -> None:
    t = Template("t", system="Task.", examples=(Example("x", "y"),), suffix="One word.")
    request = Request("hello", system="Default.", examples=(Example("u", "v"),))
    applied = apply_template(t, request, system_given=False)
    assert applied.system == "Task." and applied.instruction == "hello\n\nOne word."
    assert applied.examples == (Example("x", "y"), Example("u", "v"))
    assert apply_template(t, request, system_given=True).system == "Default."
    # With no words of the user's own, the suffix is the question, once.
    words, rest = template_words(t, ())
    assert words == ("One word.",) and rest.suffix is None
    assert template_words(t, ("hi",)) == (("hi",), t)


def templates(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ASKGPT_BIN, "templates", *args], capture_output=True, text=True, cwd=REPO / "tests",
                          env={**os.environ, "ASKGPT_HOME": str(home), **(env or {})}, timeout=60)


def test_templates_commands(tmp_path: Path) -> None:
    examples = tmp_path / "ex.jsonl"
    examples.write_text('{"input": "rain", "output": "wet"}\n')
    saved = templates(tmp_path, "save", "weather", "-s", "One word.", "-e", "sun => warm", "--examples",
                      str(examples), "--suffix", "Be brief.")
    assert saved.returncode == 0, saved.stderr
    shown = json.loads(templates(tmp_path, "show", "weather", "--json").stdout)
    assert shown["examples"] == [{"input": "sun", "output": "warm"}, {"input": "rain", "output": "wet"}]
    assert shown["suffix"] == "Be brief."
    listed = json.loads(templates(tmp_path, "list", "--json").stdout)["templates"]
    assert {t["name"] for t in listed} == {*BUILTIN, "weather"}
    editor = f"{sys.executable} -c \"import sys; p = sys.argv[1]; t = open(p).read(); " \
             f"open(p, 'w').write(t.replace('One word.', 'Two words.'))\""
    assert templates(tmp_path, "edit", "weather", env={"EDITOR": editor, "VISUAL": ""}).returncode == 0
    assert "Two words." in templates(tmp_path, "show", "weather").stdout
    assert templates(tmp_path, "rm", "weather").returncode == 0
    assert templates(tmp_path, "show", "weather").returncode == ExitCode.NOT_FOUND
    assert templates(tmp_path, "save", "empty").returncode == ExitCode.USAGE_ERROR


def ask(home: Path, *args: str, input: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ASKGPT_BIN, "-t", "0", *args], input=input.decode(), capture_output=True, text=True,
                          cwd=cwd or REPO / "tests", env={**os.environ, "ASKGPT_HOME": str(home)}, timeout=120)


SUMMARY_INPUT = ("The city council met on Tuesday to discuss the new bridge. After three hours of debate, "
                 "members voted to fund the bridge, which will open in 2027 and cost 40 million euros. "
                 "Residents had asked for it for ten years, and the vote was greeted with applause.")


@pytest.mark.model
def test_builtin_templates_answer_in_their_form(tmp_path: Path) -> None:
    # Only what holds on any CPU is asserted. The free-text templates' greedy paths have
    # near-ties (measured: the closest step leads by 0.12 nats for translate, 0.16 for
    # commit-message, 0.01 for summarize), so their exact form (one line, <= 72 characters,
    # a word count) is not asserted: each answers, and says something about its input.
    translated = ask(tmp_path, "-T", "translate", "I like cheese.")
    assert translated.returncode == 0 and translated.stdout.strip()

    summary = ask(tmp_path, "-T", "summarize", SUMMARY_INPUT)
    assert summary.returncode == 0 and summary.stdout.strip()

    explained = ask(tmp_path, "-T", "explain-code", "def add(a, b):\n    return a + b")
    assert re.search(r"\badd", explained.stdout, re.IGNORECASE)

    diff = "--- a/README.md\n+++ b/README.md\n-Instal with pip\n+Install with pip\n"
    message = ask(tmp_path, "-T", "commit-message", input=diff.encode())
    assert message.returncode == 0 and message.stdout.strip().splitlines()[0].strip()


@pytest.mark.model
def test_the_classify_template_answers_with_one_label_by_a_checked_margin(tmp_path: Path) -> None:
    # The exact label is asserted because its margin is checked: the same prompt in-process,
    # greedy, every step (the label and the end of the answer after it) leads its runner-up
    # by at least 0.3 nats (measured: 0.88 and 0.62), far above CPUs' last-bit differences.
    # The CLI runs without the repeat penalty, as the walk does.
    from test_real_model import greedy_margins

    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.engine import load_llama_engine
    from askgpt.runtime.models.registry import builtin_model
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare

    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text("repeat_penalty = 1.0\n")
    texts = ("I love it, it is wonderful!", "This is the worst thing ever.")
    with load_llama_engine(builtin_model(), EngineConfig(n_ctx=2048)) as engine:
        walked = []
        for text in texts:
            request = apply_template(BUILTIN["classify"], Request(text), system_given=False)
            answer, lead = greedy_margins(engine, list(prepare(engine, request, GenerationConfig(16)).parts), 16)
            assert lead >= 0.3, (text, answer, lead)
            walked.append(answer.strip())
    for text, expected in zip(texts, walked, strict=True):
        label = ask(home, "-T", "classify", text).stdout.strip()
        assert label == expected and label in {"positive", "negative", "neutral"}, label


def readme_recipes() -> list[str]:
    return doc_block("README.md", "### Recipes")


@pytest.mark.model
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_readme_recipes_run_on_the_builtin_model(tmp_path: Path) -> None:
    recipes = readme_recipes()
    assert len(recipes) == 4
    work = tmp_path / "work"
    work.mkdir()
    (work / "report.txt").write_text(SUMMARY_INPUT + "\n")
    (work / "app.py").write_text("def add(a, b):\n    return a + b\n")
    (work / "Makefile").write_text("all:\n\tcc -o app missing_file.c\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=work, check=True)
    subprocess.run([*git, "add", "app.py"], cwd=work, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "first"], cwd=work, check=True)
    (work / "app.py").write_text("def add(a, b):\n    \"\"\"Sum of a and b.\"\"\"\n    return a + b\n")
    env = {**os.environ, "ASKGPT_HOME": str(tmp_path / "home"),
           "PATH": f"{Path(ASKGPT_BIN).parent}{os.pathsep}{os.environ['PATH']}"}
    for recipe in recipes:
        result = subprocess.run(["bash", "-c", recipe.replace("askgpt", "askgpt -t 0 -n 48")],
                                cwd=work, env=env, capture_output=True, text=True, timeout=180)
        # make fails on purpose; without pipefail the status is askgpt's, the last in the pipe.
        assert result.returncode == 0 and result.stdout.strip(), (recipe, result.stderr)
        assert "askgpt: error" not in result.stderr, (recipe, result.stderr)


def test_shell_completion_offers_template_and_model_names(tmp_path: Path) -> None:
    def complete(words: str) -> list[str]:
        env = {**os.environ, "ASKGPT_HOME": str(tmp_path), "_ASKGPT_COMPLETE": "complete_bash",
               "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
        result = subprocess.run([ASKGPT_BIN], env=env, capture_output=True, text=True, cwd=REPO / "tests", timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert complete("askgpt -T c") == ["classify", "commit-message"]
    assert complete("askgpt ask -m smol") == ["smollm2"]
    shown = subprocess.run([ASKGPT_BIN, "--show-completion", "bash"], capture_output=True, text=True,
                           cwd=REPO / "tests", timeout=60)
    assert "_ASKGPT_COMPLETE" in shown.stdout
