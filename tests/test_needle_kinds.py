"""`askgpt bench needle --kinds`: what each kind plants, asks and scores (no model needed)."""

from __future__ import annotations

import json
import random
import re

import pytest
from fakes import ScriptedEngine, ScriptedFactory
from typer.testing import CliRunner

from askgpt.cli.app import create_app
from askgpt.runtime.bench.needle import plant
from askgpt.runtime.bench.needle_kinds import NeedleKind, kind_list, make_probe, mentions, needed, score
from askgpt.runtime.errors import UsageError

SEEDS = range(60)
STOP = {"which", "where", "there", "their", "about", "would", "could", "every", "these", "those", "while"}


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


def word_count(text: str) -> int:
    return len(text.split())


def probes(kind: NeedleKind) -> list:  # type: ignore[type-arg]
    return [make_probe(kind, random.Random(f"test-{kind.value}-{s}"), 0.3) for s in SEEDS]


def test_whole_words_only_and_case_blind() -> None:
    assert mentions("The Cat sat.", "cat") and mentions("it is 4417.", "4417")
    assert not mentions("this indicates nothing", "cat")
    assert not mentions("code 44170", "4417") and not mentions("code 14417", "4417")
    assert mentions("Hook Head light", "hook head")


@pytest.mark.parametrize("kind", list(NeedleKind))
def test_each_kind_plants_its_facts_and_scores_by_whole_words(kind: NeedleKind) -> None:
    for seed, probe in enumerate(probes(kind)):
        assert probe.kind is kind and len(probe.facts) == len(probe.depths) and probe.answers
        text, tokens = plant(400, list(zip(probe.depths, probe.facts, strict=True)), "prose", seed, word_count)
        paragraphs = text.split("\n\n")
        for fact in probe.facts:  # each fact is planted whole, as a paragraph of its own
            assert fact in paragraphs
        assert tokens >= 400
        for spellings in probe.answers:  # every value asked for is stated by a planted fact (or is their count)
            assert probe.question.startswith("How many") or any(mentions(f, s) for f in probe.facts for s in spellings)
        full = " and ".join(s[0] for s in probe.answers)
        assert score(probe, f"I read that it was {full}.") == len(probe.answers)
        assert score(probe, "I could not find it.") == 0
        glued = " ".join(f"x{s[0]}y" for s in probe.answers)  # inside other words: not named
        assert score(probe, glued) == 0
        if len(probe.answers) > 1:  # scored per value
            assert score(probe, f"Only {probe.answers[0][0]}.") == 1


def test_multi_value_spreads_three_values_and_aggregate_plants_several() -> None:
    for probe in probes(NeedleKind.MULTI_VALUE):
        assert len(probe.facts) == 3 and len(probe.answers) == 3
        assert [int(d * 3) for d in probe.depths] == [0, 1, 2]  # one in each third of the input
    for probe in probes(NeedleKind.AGGREGATE):
        assert 3 <= len(probe.facts) <= 5
        if probe.question.startswith("How many"):
            n = len(probe.facts)
            assert probe.answers == ((str(n), {3: "three", 4: "four", 5: "five"}[n]),)
            assert score(probe, f"The birds were seen {n} times.") == 1
            assert score(probe, f"The birds were seen {n + 1} times.") == 0
        else:
            assert len(probe.answers) == len(probe.facts)


def test_a_distractor_value_makes_the_answer_wrong() -> None:
    for probe in probes(NeedleKind.DISTRACTORS):
        assert len(probe.facts) == 8 and len(probe.wrong) == 7
        target = probe.answers[0][0]
        assert target not in probe.wrong
        named = [f for f in probe.facts if mentions(f, target)]
        assert len(named) == 1 and words(named[0]) & words(probe.question)  # the question names its entity
        others = set(probe.facts) - set(named)
        assert all(not words(f).isdisjoint(words(named[0]) - {target.lower()}) for f in others)  # look-alikes
        assert score(probe, f"It is {target}.") == 1
        assert score(probe, f"It is {target} or {probe.wrong[0]}.") == 0


def test_multi_query_asks_two_facts_in_one_question() -> None:
    for probe in probes(NeedleKind.MULTI_QUERY):
        assert len(probe.facts) == 2 and len(probe.answers) == 2 and "?" in probe.question


def test_paraphrase_questions_share_no_rare_word_with_their_fact() -> None:
    questions = set()
    for probe in probes(NeedleKind.PARAPHRASE):
        shared = {w for w in words(probe.facts[0]) & words(probe.question) if len(w) >= 5} - STOP
        assert shared == set(), (probe.facts[0], probe.question)
        questions.add(probe.question)
    assert len(questions) >= 5  # several templates, not one phrasing


@pytest.mark.parametrize("kind", [k for k in NeedleKind if k is not NeedleKind.EXACT])
def test_only_exact_repeats_the_facts_wording(kind: NeedleKind) -> None:
    def trigrams(text: str) -> set[tuple[str, ...]]:
        w = re.findall(r"\w+", text.lower())
        return {tuple(w[i:i + 3]) for i in range(len(w) - 2)}

    for probe in probes(kind):
        assert all(trigrams(f).isdisjoint(trigrams(probe.question)) for f in probe.facts), probe
    exact = probes(NeedleKind.EXACT)[0]
    assert not trigrams(exact.facts[0]).isdisjoint(trigrams(exact.question))


def test_prose_filler_is_prose() -> None:
    text, _ = plant(500, [(0.5, "The fact.")], "prose", 0, word_count)
    paragraphs = [p for p in text.split("\n\n") if p != "The fact."]
    # real sentences of the standard library's docstrings, not the synthetic word salad
    assert all(len(p) > 80 for p in paragraphs) and len({p for p in paragraphs}) == len(paragraphs)
    assert sum(p.count(". ") + p.endswith(".") for p in paragraphs) >= len(paragraphs)


def test_kind_list() -> None:
    assert kind_list("all") == list(NeedleKind)
    assert kind_list("paraphrase, exact,paraphrase") == [NeedleKind.PARAPHRASE, NeedleKind.EXACT]
    with pytest.raises(UsageError, match="--kinds must be one of"):
        kind_list("exact,riddles")


def bench(args: list[str], answer: str = "scripted answer"):  # type: ignore[no-untyped-def]
    factory = ScriptedFactory(ScriptedEngine(answer=answer, n_ctx=4096))
    return CliRunner().invoke(create_app(factory), ["bench", "needle", *args])


def test_cli_reports_every_kind_asked_for_in_json_and_text() -> None:
    args = ["--sizes", "300,600", "--depths", "50", "--seeds", "1", "--trials", "2", "--filler", "synthetic"]
    result = bench([*args, "--kinds", "exact,multi-value,distractors", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data["kinds"]) == ["exact", "multi-value", "distractors"]
    assert set(data["kinds"]["multi-value"]) == {"300", "600"}
    entry = data["kinds"]["multi-value"]["600"]
    assert entry["runs"] == 2 and entry["expected"] == 6 and entry["hits"] == 0 and entry["recall"] == 0
    assert entry["seconds_per_100k"] > 0
    kinds = {c["kind"]: c for c in data["cells"]}
    assert kinds["exact"]["filler"] == "synthetic" and kinds["distractors"]["filler"] == "prose"
    assert all(c["in_context"] for c in data["cells"] if c["kind"] == "exact")  # small inputs are read whole
    text = bench([*args, "--kinds", "all"]).stdout
    for kind in NeedleKind:
        assert re.search(rf"^{kind.value}\s+\d+/\d+ \(0%\)", text, re.M), text
    assert "kind exact, filler: synthetic" in text and "peak RSS" in text


def test_cli_scores_an_answer_that_names_the_value() -> None:
    # Every exact haystack asks for its passphrase; an answer naming all of them names each one.
    args = ["--sizes", "300", "--depths", "0,100", "--seeds", "2", "--filler", "prose", "--kinds", "exact", "--json"]
    cells = json.loads(bench(args).stdout)["cells"]
    facts = [make_probe(NeedleKind.EXACT, random.Random(f"prose-300-{c['depth']}-{c['seed']}"), c["depth"])
             for c in cells]
    answer = " ".join(p.answers[0][0] for p in facts)
    assert len(answer) <= 48  # fits the answer's token budget (one byte per token here)
    cells = json.loads(bench(args, answer=answer).stdout)["cells"]
    assert all(c["found"] and c["hits"] == 1 for c in cells)


def test_cli_no_copy_bias_measures_answers_without_it() -> None:
    # 3,000 tokens (a byte each here) is past what the model reads whole: the answer is retrieved.
    args = ["--sizes", "3000", "--trials", "1", "--kinds", "paraphrase", "--retrieval", "bm25", "--json"]
    for flag, biased in (([], True), (["--no-copy-bias"], False)):
        engine = ScriptedEngine(answer="scripted answer", n_ctx=4096)
        result = CliRunner().invoke(create_app(ScriptedFactory(engine)), ["bench", "needle", *args, *flag])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["cells"][0]["strategy"] == "retrieve"
        assert (engine.samplings[-1].copy_bias is not None) is biased


@pytest.mark.parametrize("kinds", ["riddles", "exact,riddles", ""])
def test_cli_rejects_an_unknown_kind(kinds: str) -> None:
    result = bench(["--kinds", kinds, "--sizes", "300"])
    assert result.exit_code == 2 and "--kinds" in result.output


def test_cli_plot_draws_the_grid_and_the_kinds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("matplotlib")
    png = tmp_path / "needle.png"
    args = ["--sizes", "300,600", "--depths", "0,100", "--seeds", "1", "--trials", "1", "--filler", "prose"]
    for kinds in ("all", "paraphrase,aggregate"):  # with exact's heatmap, and lines alone
        result = bench([*args, "--kinds", kinds, "--plot", str(png)])
        assert result.exit_code == 0, result.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        png.unlink()


def test_the_facts_an_answer_needs() -> None:
    for probe in probes(NeedleKind.DISTRACTORS):  # the asked one, not its look-alikes
        assert needed(probe) == tuple(f for f in probe.facts if mentions(f, probe.answers[0][0]))
    for probe in probes(NeedleKind.AGGREGATE):  # a count needs every item; a list, each item's fact
        assert needed(probe) == probe.facts
