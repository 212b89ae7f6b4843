"""Performance features that are not speed itself: the memory check before a load,
GPU layers, and `askgpt bench startup` as a real process."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from askgpt.runtime.engine.memory import InsufficientMemoryError, check_fits, plan
from askgpt.runtime.errors import ExitCode
from askgpt.runtime.models.gguf import check_gguf
from askgpt.runtime.models.registry import ModelRef, builtin_model
from conftest import ASKGPT_BIN, REPO, run_askgpt

MIB = 2**20


def write_tiny_gemma(path: Path) -> None:
    """A 2-layer Gemma with random weights whose heads are wider than n_embd / n_head
    (key/value length 32, not 64 / 4 = 16) and 2 KV heads for 4 query heads."""
    import gguf
    import numpy as np

    rng = np.random.default_rng(0)
    n_embd, n_head, n_kv, width, n_ff, n_layer = 64, 4, 2, 32, 128, 2
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    stand_ins = iter(range(256, 512))  # GPT-2's byte-level stand-ins for unprintable bytes
    tokens = [chr(b) if b in printable else chr(next(stand_ins)) for b in range(256)] + ["<s>", "</s>"]
    w = gguf.GGUFWriter(str(path), "gemma")
    w.add_context_length(8192)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_key_length(width)
    w.add_value_length(width)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(0)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types([1] * 256 + [3, 3])
    w.add_token_merges(["Ġ t"])
    w.add_bos_token_id(256)
    w.add_eos_token_id(257)

    def t(name: str, *shape: int) -> None:
        w.add_tensor(name, (rng.standard_normal(shape) * 0.1).astype(np.float32))

    t("token_embd.weight", len(tokens), n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.attn_q.weight", n_head * width, n_embd)
        t(f"blk.{i}.attn_k.weight", n_kv * width, n_embd)
        t(f"blk.{i}.attn_v.weight", n_kv * width, n_embd)
        t(f"blk.{i}.attn_output.weight", n_embd, n_head * width)
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


KV_LOG = re.compile(r"llama_kv_cache: size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers.*?"
                    r"K \((\w+)\): +([\d.]+) MiB, V \((\w+)\): +([\d.]+) MiB")


def assert_cache_is_what_llama_cpp_allocates(ref: ModelRef, n_ctx: int) -> int:
    """Loads ``ref`` with each cache type and compares askgpt's figure (--stats, the memory
    check) with the size llama.cpp logs for the cache it allocated. Returns the cells."""
    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.engine import load_llama_engine

    header = check_gguf(ref.path)
    for kv_type in ("f16", "q8_0"):
        lines: list[str] = []
        with load_llama_engine(ref, EngineConfig(n_ctx=n_ctx, kv_type=kv_type, native_log=lines.append)) as engine:
            reported = engine.info.kv_bytes
        found = KV_LOG.search("".join(lines))
        assert found is not None, "".join(lines)[-2000:]
        total, cells, layers, k_type, k_mib, v_type, v_mib = found.groups()
        assert (k_type, v_type) == (kv_type, kv_type) and int(layers) == header.number("block_count")
        assert reported == plan(header, n_ctx=n_ctx, kv_type=kv_type).kv_cache
        # llama.cpp prints MiB to two decimals: agree to that rounding, K and V each.
        assert abs(reported / MIB - float(total)) <= 0.006, (kv_type, reported / MIB, total)
        assert abs(reported / 2 / MIB - float(k_mib)) <= 0.006 and float(k_mib) == float(v_mib)
    return int(cells)


def test_the_cache_size_is_what_llama_cpp_allocates_for_heads_wider_than_n_embd_over_n_head(tmp_path: Path) -> None:
    path = tmp_path / "gemma.gguf"
    write_tiny_gemma(path)
    header = check_gguf(path)
    assert header.number("attention.key_length") != header.number("embedding_length") // header.number(
        "attention.head_count")  # the case an n_embd / n_head formula gets wrong (by half here)
    assert assert_cache_is_what_llama_cpp_allocates(ModelRef("gemma", path), 3000) == 3072


@pytest.mark.model
def test_the_cache_size_is_what_llama_cpp_allocates_for_the_builtin_model() -> None:
    assert assert_cache_is_what_llama_cpp_allocates(builtin_model(), 1000) == 1024
    header = check_gguf(builtin_model().path)
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


@pytest.mark.model
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

    from askgpt.runtime.engine.llama.lookup import lookup_draft

    draft = lookup_draft(np.asarray(history, dtype=np.intc), pending, limit)
    assert draft == reference_draft(history, pending, limit)
    assert len(draft) <= limit


@pytest.mark.model
def test_lookup_decoding_keeps_its_guesses_and_the_greedy_tokens(real_engine) -> None:  # type: ignore[no-untyped-def]
    from test_real_model import LOOPING_UNIT, assistant_prefix, greedy_margins, run

    from askgpt.runtime.engine.base import TokenIds
    from askgpt.runtime.prompting.request import Request

    # Lookup reads its guesses in one batch, and llama.cpp rounds a batch differently from
    # one token at a time (logits differ by up to 1.4, benchmarks/batch_numerics.py), so
    # its output equals plain decoding only where every step's lead is wider than twice
    # that. A strongly repeated answer has such leads: checked at every one of the 40 steps
    # (measured: at least 3.8 nats).
    request = Request("Repeat the sentence forever.")
    prompt = assistant_prefix(real_engine, request, " ".join([LOOPING_UNIT] * 15))
    walked, lead = greedy_margins(real_engine, [TokenIds(prompt.tokens)], 40)
    assert lead >= 3.0, lead
    plain, _ = run(real_engine, prompt, 40, repeat_penalty=1.0, loop_guard=None)
    assert plain == walked
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
