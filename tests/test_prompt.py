"""Prompt construction: requests, few-shot turns, example parsing, chat templates."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fakes import CHATML
from hypothesis import given
from hypothesis import strategies as st

from askgpt.runtime.documents.inputs import collect_inputs, load_examples
from askgpt.runtime.engine.base import ModelInfo
from askgpt.runtime.errors import InputNotFoundError, UsageError
from askgpt.runtime.prompting.request import (
    Document,
    Example,
    Message,
    Request,
    build_messages,
    build_request,
    parse_example,
    render_plain,
    text_of,
    user_content,
)
from askgpt.runtime.prompting.template import TemplateError, format_prompt, render_chat


def info(template: str | None) -> ModelInfo:
    return ModelInfo(name="t", path=Path("t.gguf"), n_ctx=512, n_ctx_train=512, n_embd=8,
                     chat_template=template, bos_token="<s>", eos_token="</s>", add_bos=True)


# --- example parsing -------------------------------------------------------

no_arrow = st.text(min_size=1).filter(lambda s: "=>" not in s and s.strip() != "")


@given(source=no_arrow, target=st.text(min_size=1).filter(lambda s: s.strip() != ""))
def test_parse_example_splits_on_the_first_arrow(source: str, target: str) -> None:
    ex = parse_example(f"{source} => {target}")
    assert ex == Example(source.strip(), target.strip())


@given(st.text().filter(lambda s: "=>" not in s))
def test_parse_example_without_arrow_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_example(text)


@pytest.mark.parametrize("bad", ["=> out", "in =>", "  =>  "])
def test_parse_example_needs_both_sides(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_example(bad)


def test_load_examples_reads_jsonl_and_reports_line_numbers(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text('{"input": "a", "output": "b"}\n\n{"input": "c", "output": "d => e"}\n')
    assert load_examples(str(good)) == (Example("a", "b"), Example("c", "d => e"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": 1}\n')
    with pytest.raises(UsageError, match="line 2"):
        load_examples(str(bad))
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    with pytest.raises(UsageError, match="line 1: not JSON"):
        load_examples(str(broken))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="no examples"):
        load_examples(str(empty))
    with pytest.raises(InputNotFoundError):
        load_examples(str(tmp_path / "missing.jsonl"))


# --- requests and messages -------------------------------------------------

def test_zero_shot_is_system_plus_input() -> None:
    msgs = build_messages(Request("cheese", system="Translate English to French."))
    assert msgs == [Message("system", "Translate English to French."), Message("user", "cheese")]


def test_few_shot_examples_precede_the_real_input() -> None:
    req = Request("cheese", system="Translate.", examples=(Example("sea otter", "loutre de mer"),))
    assert [m.role for m in build_messages(req)] == ["system", "user", "assistant", "user"]
    assert build_messages(req)[2].text == "loutre de mer"


def test_documents_come_first_each_delimited() -> None:
    req = Request("summarize", documents=(Document("a.txt", "AAA\n"), Document("stdin", "BBB")))
    assert text_of(user_content(req)) == (
        '<document source="a.txt">\nAAA\n</document>\n\n<document source="stdin">\nBBB\n</document>\n\nsummarize'
    )


def test_plain_completion_prompt_for_models_without_template() -> None:
    req = Request("cheese", system="Translate English to French.", examples=(Example("sea otter", "loutre de mer"),))
    expected = "Translate English to French.\n\nInput: sea otter\nOutput: loutre de mer\n\nInput: cheese\nOutput:"
    assert text_of(render_plain(req)) == expected
    formatted = format_prompt(info(None), req)
    assert (formatted.text, formatted.stop) == (expected, ("\nInput:",))


@given(words=st.lists(st.text(min_size=1), max_size=5), piped=st.one_of(st.none(), st.text()))
def test_build_request_never_drops_input(words: list[str], piped: str | None) -> None:
    prompt = " ".join(words)
    try:
        req = build_request(prompt=prompt, stdin_text=piped)
    except UsageError:
        assert not prompt.strip() and not (piped or "").strip()
        return
    everything = text_of(user_content(req))
    if prompt.strip():
        assert prompt.strip() in everything
    if piped and piped.strip():
        assert piped.strip() in everything


def test_documents_without_instruction_is_an_error() -> None:
    with pytest.raises(UsageError, match="no instruction"):
        build_request(prompt="", stdin_text=None, documents=[Document("a", "x")])


def test_collect_inputs_never_reads_a_terminal_stdin() -> None:
    class Exploding(io.BytesIO):
        def read(self, *a: object) -> bytes:
            raise AssertionError("a terminal stdin must not be read")

    req = collect_inputs(prompt_words=["hi"], files=[], stdin=Exploding(), stdin_is_terminal=True).request
    assert req.documents == () and req.instruction == "hi"
    with pytest.raises(UsageError, match="stdin is a terminal"):
        collect_inputs(prompt_words=["hi"], files=["-"], stdin=Exploding(), stdin_is_terminal=True)


def test_collect_inputs_decodes_bad_utf8_with_replacement() -> None:
    req = collect_inputs(prompt_words=["fix"], files=[], stdin=io.BytesIO(b"caf\xe9"),
                         stdin_is_terminal=False).request
    assert req.documents == (Document("stdin", "caf\ufffd"),)


# --- chat templates --------------------------------------------------------

def test_chat_template_renders_messages() -> None:
    out = render_chat(CHATML, [Message("user", "hi")], bos_token="", eos_token="")
    assert out == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_template_runs_sandboxed() -> None:
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(TemplateError, match="unsafe"):
        render_chat(evil, [Message("user", "hi")], bos_token="", eos_token="")


def test_template_rejecting_system_role_gets_it_folded_into_the_user_turn() -> None:
    gemma_like = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}"
        "<start_of_turn>model\n"
    )
    out = format_prompt(info(gemma_like), Request("cheese", system="Translate.")).text
    # (Jinja drops a template's final newline, as in transformers and llama-cpp-python.)
    assert out == "<start_of_turn>user\nTranslate.\n\ncheese<end_of_turn>\n<start_of_turn>model"


def test_broken_template_is_a_model_error() -> None:
    with pytest.raises(TemplateError, match="does not parse"):
        format_prompt(info("{% for %}"), Request("x"))


def test_template_tojson_and_bos_helpers() -> None:
    tpl = "{{ bos_token }}{{ messages | tojson }}"
    out = render_chat(tpl, [Message("user", "é")], bos_token="<s>", eos_token="")
    assert out == "<s>" + json.dumps([{"role": "user", "content": "é"}], ensure_ascii=False)
