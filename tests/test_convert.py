"""GGUF quantization through llama.cpp and the quality report, on the real built-in model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from askgpt.convert.report import compare, default_text, windows
from askgpt.runtime.errors import UsageError
from askgpt.runtime.models.filetypes import OUTPUT_TYPES as TYPES
from askgpt.runtime.models.filetypes import output_type
from askgpt.runtime.models.gguf import read_summary
from askgpt.runtime.models.registry import builtin_model
from conftest import run_askgpt


def test_types_table_is_complete_and_ordered() -> None:
    names = [t.name for t in TYPES]
    for wanted in ("F16", "Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0"):
        assert wanted in names
    assert output_type("q4_k_m").ftype == 15 and output_type("Q8_0").ftype == 7
    with pytest.raises(UsageError):
        output_type("Q9_9")
    listed = run_askgpt(["convert", "types"])
    assert listed.returncode == 0 and b"Q4_K_M" in listed.stdout and b"bits/weight" in listed.stdout


def test_windows_cover_the_text_without_overlap() -> None:
    tokens = list(range(1030))
    parts = windows(tokens, 512)
    assert [len(p) for p in parts] == [512, 512, 6] and sum(parts, []) == tokens
    assert windows([1], 512) == []


def test_report_of_a_model_against_itself_is_zero_loss() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 20))
    logp = table - np.log(np.exp(table).sum(axis=1, keepdims=True))

    def scorer(tokens: list[int]) -> np.ndarray:
        return logp[np.array(tokens) % 50]

    def noisy(tokens: list[int]) -> np.ndarray:
        q = logp[np.array(tokens) % 50] + rng.normal(scale=0.5, size=(len(tokens), 20))
        return q - np.log(np.exp(q).sum(axis=1, keepdims=True))

    tokens = list(rng.integers(0, 20, size=300))
    same = compare(tokens, scorer, scorer, window=64, model_name="a", reference_name="a")
    assert same.kl_mean == pytest.approx(0.0, abs=1e-12) and same.top1_agreement == 1.0
    assert same.perplexity == pytest.approx(same.reference_perplexity)
    worse = compare(tokens, noisy, scorer, window=64, model_name="b", reference_name="a")
    assert worse.kl_mean > 0.01 and worse.top1_agreement < 1.0
    assert same.tokens == worse.tokens == 300 - len(windows(tokens, 64))  # each window predicts all but its last


def test_default_text_is_several_thousand_tokens_of_varied_text() -> None:
    text = default_text()
    assert len(text.split()) > 2000
    assert "def " in text and "{" in text and any(ch.isdigit() for ch in text)


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in model requantized to F16 (the reference), then to Q8_0 and Q4_0."""
    folder = tmp_path_factory.mktemp("ladder")
    f16 = run_askgpt(["convert", "quantize", str(builtin_model().path), str(folder / "f16.gguf"), "--type", "F16"],
                     timeout=600)
    assert f16.returncode == 0, f16.stderr
    for t in ("Q8_0", "Q4_0"):
        out = run_askgpt(["convert", "quantize", str(folder / "f16.gguf"), str(folder / f"{t}.gguf"), "--type", t],
                         timeout=600)
        assert out.returncode == 0, out.stderr
        assert b"bits per weight" in out.stderr and b"peak memory" in out.stderr
    return folder


@pytest.mark.model
def test_quantized_files_are_complete_checked_and_usable(ladder: Path) -> None:
    source = read_summary(ladder / "f16.gguf")
    assert source.tensor_types().keys() <= {"F16", "F32"}
    q4 = read_summary(ladder / "Q4_0.gguf")
    assert {t.name: t.shape for t in q4.tensors} == {t.name: t.shape for t in source.tensors}
    assert "Q4_0" in q4.tensor_types() and q4.size < source.size / 2.5
    assert sorted(p.name for p in ladder.iterdir()) == ["Q4_0.gguf", "Q8_0.gguf", "f16.gguf"]  # no temporaries
    answer = run_askgpt(["-m", str(ladder / "Q8_0.gguf"), "-t", "0", "What is the capital of France?"])
    assert answer.returncode == 0 and "Paris" in answer.stdout.decode()


@pytest.mark.model
def test_quality_report_shows_more_loss_for_fewer_bits(ladder: Path, tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text(default_text()[:4000])  # about 800 tokens: enough to separate the two
    reports = {}
    for t in ("Q8_0", "Q4_0"):
        result = run_askgpt(["convert", "report", str(ladder / f"{t}.gguf"), "--reference", str(ladder / "f16.gguf"),
                             "--text", str(text), "--json"], timeout=600)
        assert result.returncode == 0, result.stderr
        reports[t] = json.loads(result.stdout)
    q8, q4 = reports["Q8_0"], reports["Q4_0"]
    # Measured on the whole default text: KL 0.004 (Q8_0) vs 0.26 (Q4_0): a wide margin.
    assert 0 <= q8["kl_mean"] < q4["kl_mean"] / 5
    assert q8["top1_agreement"] > q4["top1_agreement"] and q8["top1_agreement"] > 0.9
    assert q8["kl_p99"] >= q8["kl_mean"] and q8["tokens"] > 500
    plain = run_askgpt(["convert", "report", str(ladder / "Q8_0.gguf"), "--reference", str(ladder / "f16.gguf"),
                        "--text", str(text)], timeout=600)
    assert b"KL divergence: mean" in plain.stdout and b"top-1 agreement" in plain.stdout


@pytest.mark.parametrize("make, code, words", [
    (lambda d: (d / "missing.gguf", d / "out.gguf"), 3, "not found"),
    (lambda d: ((d / "junk.gguf").write_bytes(b"GGUF" + b"\xff" * 64) and d / "junk.gguf", d / "out.gguf"), 4,
     "not a valid GGUF file"),
    (lambda d: (builtin_model().path, d / "no-such-folder" / "out.gguf"), 1, "does not exist"),
    (lambda d: (builtin_model().path, builtin_model().path), 1, "exists"),
])
def test_quantize_errors_are_one_line_and_leave_nothing(tmp_path: Path, make, code: int, words: str) -> None:
    src, dst = make(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_askgpt(["convert", "quantize", str(src), str(dst), "--type", "Q8_0"])
    assert result.returncode == code, result.stderr
    err = result.stderr.decode()
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_unknown_type_is_a_usage_error(tmp_path: Path) -> None:
    result = run_askgpt(["convert", "quantize", str(builtin_model().path), str(tmp_path / "o.gguf"), "--type", "Q9"])
    assert result.returncode == 2 and b"unknown output type" in result.stderr
    assert list(tmp_path.iterdir()) == []
