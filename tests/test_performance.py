"""Performance features that are not speed itself: the memory check before a load,
GPU layers, and `askgpt bench startup` as a real process."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import ASKGPT_BIN, REPO, run_askgpt
from hypothesis import given, settings
from hypothesis import strategies as st

from askgpt.runtime.errors import ExitCode
from askgpt.runtime.gguf_check import check_gguf
from askgpt.runtime.memory import InsufficientMemoryError, check_fits, plan
from askgpt.runtime.models import builtin_model

MIB = 2**20


def test_the_memory_plan_matches_the_cache_llama_cpp_allocates() -> None:
    from askgpt.runtime.engine import EngineConfig
    from askgpt.runtime.llama_engine import load_llama_engine

    header = check_gguf(builtin_model().path)
    for kv_type in ("f16", "q8_0"):
        with load_llama_engine(builtin_model(), EngineConfig(n_ctx=1024, kv_type=kv_type)) as engine:
            assert plan(header, n_ctx=1024, kv_type=kv_type).kv_cache == engine.info.kv_bytes
    assert plan(header, n_ctx=0, kv_type="f16").kv_cache == plan(header, n_ctx=8192, kv_type="f16").kv_cache
    assert 80 * MIB < header.data_bytes < 120 * MIB  # SmolLM2-135M at Q4_1


def test_a_load_that_does_not_fit_is_refused_with_a_context_that_would() -> None:
    header = check_gguf(builtin_model().path)
    need = plan(header, n_ctx=8192, kv_type="f16")
    assert check_fits(header, "m", n_ctx=8192, kv_type="f16", available=need.total) == need
    assert check_fits(header, "m", n_ctx=8192, kv_type="f16", available=None) == need
    with pytest.raises(InsufficientMemoryError) as caught:
        check_fits(header, "m", n_ctx=8192, kv_type="f16", available=need.total - 1)
    assert caught.value.exit_code == ExitCode.MODEL_FAILURE
    suggested = int(caught.value.hint.split("--ctx ")[1].split()[0])
    assert 256 <= suggested < 8192 and suggested % 256 == 0
    check_fits(header, "m", n_ctx=suggested, kv_type="f16", available=need.total - 1)  # it does fit
    assert "q8_0" in caught.value.hint
    with pytest.raises(InsufficientMemoryError) as tiny:  # not even the weights fit
        check_fits(header, "m", n_ctx=512, kv_type="f16", available=header.data_bytes // 2)
    assert "smaller" in tiny.value.hint


def test_the_cli_refuses_a_context_larger_than_memory_in_one_line() -> None:
    # 20M positions of SmolLM2's cache: about 440 GiB, more than any machine running this has.
    result = run_askgpt(["--ctx", "20000000", "hi"])
    assert result.returncode == ExitCode.MODEL_FAILURE
    err = result.stderr.decode().strip()
    assert len(err.splitlines()) == 1 and "MiB is free" in err and "--ctx" in err


def test_gpu_layers_is_an_option_and_a_config_key(isolated_home) -> None:  # type: ignore[no-untyped-def]
    result = run_askgpt(["--gpu-layers", "0", "-t", "0", "-n", "4", "Say hi."])
    assert result.returncode == 0, result.stderr
    config = isolated_home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("gpu_layers = -1\n")
    bad = run_askgpt(["-n", "1", "hi"], env={"ASKGPT_HOME": str(isolated_home)})
    assert bad.returncode == ExitCode.USAGE_ERROR and b"gpu_layers" in bad.stderr


@pytest.mark.model
def test_bench_startup_times_whole_processes() -> None:
    result = subprocess.run([ASKGPT_BIN, "bench", "startup", "--rounds", "1", "--ctx", "512", "--json", "-q"],
                            capture_output=True, cwd=REPO / "tests", timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    labels = [p["label"] for p in data["processes"]]
    assert labels == ["python -c pass", "askgpt --help", "askgpt --version", "bare llama-cpp-python script",
                      "askgpt one-token answer"]
    walls = {p["label"]: p["wall_seconds"] for p in data["processes"]}
    # Loading a model takes longer than starting Python, whatever the machine.
    assert walls["bare llama-cpp-python script"] > walls["python -c pass"]
    assert data["answer_overhead_seconds"] == pytest.approx(
        walls["askgpt one-token answer"] - walls["bare llama-cpp-python script"])


# Prompt-lookup decoding ------------------------------------------------------

def reference_draft(history: list[int], pending: int, limit: int) -> list[int]:
    seq = [*history, pending]
    for n in (3, 2):
        if len(seq) <= n:
            continue
        for start in range(len(seq) - n - 1, -1, -1):  # the latest earlier occurrence
            if seq[start:start + n] == seq[-n:]:
                return seq[start + n:start + n + limit]
    return []


@settings(max_examples=200, deadline=None)
@given(history=st.lists(st.integers(0, 4), max_size=40), pending=st.integers(0, 4), limit=st.integers(1, 10))
def test_the_lookup_draft_is_what_followed_the_latest_match(history: list[int], pending: int, limit: int) -> None:
    import numpy as np

    from askgpt.runtime.llama_engine import _lookup_draft

    draft = _lookup_draft(np.asarray(history, dtype=np.intc), pending, limit)
    assert draft == reference_draft(history, pending, limit)
    assert len(draft) <= limit


@pytest.mark.model
def test_lookup_decoding_keeps_its_guesses_and_the_greedy_tokens(real_engine) -> None:  # type: ignore[no-untyped-def]
    from test_real_model import LOOPING_UNIT, assistant_prefix, run, top_two_gap

    from askgpt.runtime.prompt import Request

    # A strongly repeated answer: every next token leads its rival by a wide margin, so
    # batched and one-at-a-time arithmetic agree, and lookup guesses are right.
    request = Request("Repeat the sentence forever.")
    prompt = assistant_prefix(real_engine, request, " ".join([LOOPING_UNIT] * 15))
    assert top_two_gap(real_engine, prompt) > 2.0
    plain, _ = run(real_engine, prompt, 40, repeat_penalty=1.0, loop_guard=None)
    real_engine.lookup_guessed = real_engine.lookup_kept = 0
    looked, stats = run(real_engine, prompt, 40, repeat_penalty=1.0, loop_guard=None, lookup_tokens=8)
    assert looked == plain
    assert stats.generated_tokens == 40
    assert real_engine.lookup_kept >= 20 and real_engine.lookup_guessed >= real_engine.lookup_kept


@pytest.mark.model
def test_the_cli_reports_lookup_in_stats(tmp_path: Path) -> None:
    doc = tmp_path / "list.txt"
    doc.write_text("\n".join(f"item {i}: a box of {i * 3} red pencils" for i in range(12)))
    result = run_askgpt(["-t", "0", "-n", "60", "--lookup", "8", "--stats", "-f", str(doc),
                         "Repeat the list exactly."])
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stderr.decode().splitlines() if x.startswith("lookup:"))
    kept, guessed = (int(x) for x in re.findall(r"\d+", line))
    assert 0 < kept <= guessed
