"""`convert hf`: Hugging Face folders -> GGUF, checked against transformers itself.

Tiny random Llama and Phi-3 models are built with transformers around the
built-in model's real tokenizer (read from its GGUF by transformers), saved as
HF folders, converted by askgpt, and run by llama.cpp: the logits must match
transformers' forward pass. The built-in model also makes the round trip
GGUF -> transformers -> HF folder -> askgpt -> GGUF.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hf_round_trip import save_builtin_as_hf

from askgpt.convert.hf.convert import convert_hf
from askgpt.convert.hf.llama import permute_rows
from askgpt.convert.hf.tokenizer import pre_tokenizer_name
from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.llama.engine import load_llama_engine
from askgpt.runtime.engine.llama.tools import quantize_gguf, sequence_logits
from askgpt.runtime.errors import ExitCode
from askgpt.runtime.models.filetypes import output_type
from askgpt.runtime.models.gguf import read_summary
from askgpt.runtime.models.registry import ModelRef, builtin_model
from conftest import run_askgpt

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

GOLDEN = Path(__file__).parent / "golden"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def f(x):\n    return x ** 2  # square\n\n\tindented\ttabs",
    "Ünïcödé: naïve café, 東京, emoji 🎉🚀, math ∑∫√",
    "spaces    runs   and\n\n\nnewlines, numbers 1234567 and 3.14159",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
]


def quantizer(src: Path, dst: Path, ftype: int) -> None:
    quantize_gguf(src, dst, ftype, threads=os.cpu_count() or 1)


@pytest.fixture(scope="session")
def hf_tokenizer() -> Any:
    """The built-in model's tokenizer, as transformers reads it from the GGUF."""
    path = builtin_model().path
    return transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def tiny_model(kind: str, tokenizer: Any, folder: Path, **overrides: Any) -> Any:
    """A random model with grouped-query attention, its weights scaled up (std 0.15, not
    transformers' 0.02) so that the logits reach about 6 and nothing hides in rounding."""
    torch.manual_seed(0)
    common: dict[str, Any] = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=96,
                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                  max_position_embeddings=256, rms_norm_eps=1e-5, initializer_range=0.15,
                                  bos_token_id=1, eos_token_id=2)
    common.update(overrides)
    if kind == "llama":
        config = transformers.LlamaConfig(tie_word_embeddings=True, rope_theta=10000.0, **common)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Phi3Config(tie_word_embeddings=False, pad_token_id=2, **common)
        model = transformers.Phi3ForCausalLM(config)
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


def llama_logits(path: Path, tokens: list[int]) -> np.ndarray:
    engine = load_llama_engine(ModelRef(path.stem, path), EngineConfig(n_ctx=256, all_logits=True, kv_type="f32"))
    try:
        return sequence_logits(engine, tokens)
    finally:
        engine.close()


def hf_logits(model: Any, tokens: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].float().numpy()


@pytest.mark.parametrize("kind, overrides", [
    ("llama", {}),
    ("llama", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                "high_freq_factor": 4.0, "original_max_position_embeddings": 64}}),
    ("phi3", {}),
])
def test_logits_match_transformers(tmp_path: Path, hf_tokenizer: Any, kind: str, overrides: dict[str, Any]) -> None:
    folder = tmp_path / "hf"
    model = tiny_model(kind, hf_tokenizer, folder, **overrides)
    out = tmp_path / "tiny.gguf"
    summary = convert_hf(folder, out, output_type("F32"), quantizer)
    assert summary.output.tensor_types() == {"F32": summary.output.tensors.__len__()}
    tokens = hf_tokenizer(" ".join(TEXTS))["input_ids"][:120]
    ours, theirs = llama_logits(out, tokens), hf_logits(model, tokens)
    assert np.abs(theirs).max() > 3.0  # the comparison is not between near-zero numbers
    assert np.abs(ours - theirs).max() <= 1e-3


def test_without_the_qk_permutation_the_logits_differ(tmp_path: Path, hf_tokenizer: Any) -> None:
    """The parity test can fail: undoing the permutation breaks it."""
    import askgpt.convert.hf.llama as hf

    folder = tmp_path / "hf"
    model = tiny_model("llama", hf_tokenizer, folder)
    original = hf.permute_rows
    hf.permute_rows = lambda w, n_head: w  # type: ignore[assignment]
    try:
        convert_hf(folder, tmp_path / "wrong.gguf", output_type("F32"), quantizer)
    finally:
        hf.permute_rows = original
    tokens = hf_tokenizer(" ".join(TEXTS))["input_ids"][:120]
    assert np.abs(llama_logits(tmp_path / "wrong.gguf", tokens) - hf_logits(model, tokens)).max() > 1e-2


def test_permutation_interleaves_each_head_s_halves() -> None:
    w = np.arange(8)[:, None].repeat(3, axis=1)  # 2 heads of 4 rows: [0 1 | 2 3], [4 5 | 6 7]
    assert permute_rows(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]


def test_tokenization_matches_the_hf_tokenizer(tmp_path: Path, hf_tokenizer: Any) -> None:
    folder = tmp_path / "hf"
    tiny_model("llama", hf_tokenizer, folder)
    out = tmp_path / "tiny.gguf"
    convert_hf(folder, out, output_type("F16"), quantizer)
    engine = load_llama_engine(ModelRef("tiny", out), EngineConfig(n_ctx=256))
    try:
        for text in TEXTS:
            want = hf_tokenizer(text, add_special_tokens=False)["input_ids"]
            assert engine.tokenize(text, add_bos=False, special=True) == want, text
    finally:
        engine.close()


def describe_gguf(path: Path) -> str:
    """Every key-value (long arrays summarised by length and a hash) and every tensor's
    name, type and shape: the converter's output in a reviewable, stable form."""
    import hashlib

    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    lines = []
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        value = field.contents()
        if isinstance(value, list) and len(value) > 8:
            digest = hashlib.sha256(json.dumps(value, default=str).encode()).hexdigest()[:16]
            value = f"[{len(value)} items, sha256 {digest}]"
        elif isinstance(value, float):
            value = f"{value:.6g}"
        elif isinstance(value, str) and len(value) > 60:
            value = f"[{len(value)} chars, sha256 {hashlib.sha256(value.encode()).hexdigest()[:16]}]"
        lines.append(f"{key} = {value}")
    for t in reader.tensors:
        lines.append(f"tensor {t.name} {t.tensor_type.name} {[int(d) for d in t.shape]}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("kind, out_type", [("llama", "F16"), ("phi3", "BF16")])
def test_converter_output_matches_the_golden_file(tmp_path: Path, hf_tokenizer: Any, kind: str,
                                                  out_type: str) -> None:
    folder = tmp_path / "tiny-hf"
    tiny_model(kind, hf_tokenizer, folder)
    out = tmp_path / "tiny.gguf"
    convert_hf(folder, out, output_type(out_type), quantizer)
    golden = GOLDEN / f"convert-hf-{kind}-{out_type.lower()}.txt"
    text = describe_gguf(out)
    if os.environ.get("ASKGPT_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8")


def test_quantized_output_in_one_step_leaves_no_intermediate(tmp_path: Path, hf_tokenizer: Any) -> None:
    folder = tmp_path / "hf"
    tiny_model("llama", hf_tokenizer, folder)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    summary = convert_hf(folder, out_dir / "tiny-q8.gguf", output_type("Q8_0"), quantizer)
    assert "Q8_0" in summary.output.tensor_types()
    assert sorted(p.name for p in out_dir.iterdir()) == ["tiny-q8.gguf"]
    assert any(line.startswith("size:") for line in summary.lines())


def test_pickle_weights_need_the_flag_and_then_give_the_same_file(tmp_path: Path, hf_tokenizer: Any) -> None:
    folder = tmp_path / "hf"
    model = tiny_model("llama", hf_tokenizer, folder)
    (folder / "model.safetensors").unlink()
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
    with pytest.raises(Exception, match="pickle") as info:
        convert_hf(folder, tmp_path / "a.gguf", output_type("F32"), quantizer)
    assert info.value.exit_code == ExitCode.USAGE_ERROR  # type: ignore[attr-defined]
    assert not (tmp_path / "a.gguf").exists()
    convert_hf(folder, tmp_path / "a.gguf", output_type("F32"), quantizer, trust_pickle=True)
    tokens = hf_tokenizer(TEXTS[1])["input_ids"]
    assert np.abs(llama_logits(tmp_path / "a.gguf", tokens) - hf_logits(model, tokens)).max() <= 1e-3


def test_known_pre_tokenizers_by_structure() -> None:
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}) == "gpt-2"
    smollm = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                     {"type": "ByteLevel", "use_regex": True}]}
    assert pre_tokenizer_name({"pre_tokenizer": smollm}) == "smollm"
    with pytest.raises(Exception, match="unknown pre-tokenizer"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Whitespace"}})


# --- errors: one line, a documented exit code, nothing at the destination ----------------------------------

def _cli_error(args: list[str], tmp_path: Path) -> tuple[int, str]:
    result = run_askgpt(["convert", "hf", *args], env={"ASKGPT_HOME": str(tmp_path / "home")})
    lines = [line for line in result.stderr.decode().splitlines() if line.strip()]
    return result.returncode, lines[0] if lines else ""


def test_errors_are_one_line_with_their_exit_code(tmp_path: Path, hf_tokenizer: Any) -> None:
    good = tmp_path / "good"
    tiny_model("llama", hf_tokenizer, good)
    out = tmp_path / "o.gguf"

    empty = tmp_path / "empty"
    empty.mkdir()
    code, line = _cli_error([str(empty), str(out)], tmp_path)
    assert (code, "no config.json" in line) == (ExitCode.USAGE_ERROR, True), line

    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["MambaForCausalLM"]}))
    code, line = _cli_error([str(other), str(out)], tmp_path)
    assert code == ExitCode.USAGE_ERROR
    assert "unsupported architecture MambaForCausalLM; supported: LlamaForCausalLM, Phi3ForCausalLM" in line

    no_tok = tmp_path / "no-tok"
    no_tok.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tok / name).write_bytes((good / name).read_bytes())
    code, line = _cli_error([str(no_tok), str(out)], tmp_path)
    assert (code, "no tokenizer" in line) == (ExitCode.USAGE_ERROR, True), line

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for p in good.iterdir():
        (corrupt / p.name).write_bytes(p.read_bytes())
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(struct.pack("<Q", 10**12) + data[8:])
    code, line = _cli_error([str(corrupt), str(out)], tmp_path)
    assert (code, "corrupt safetensors header" in line) == (ExitCode.RUNTIME_ERROR, True), line
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])  # a truncated download
    code, line = _cli_error([str(corrupt), str(out)], tmp_path)
    assert (code, "wrong size" in line) == (ExitCode.RUNTIME_ERROR, True), line

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    # root may write anywhere a mode forbids, but not into /proc
    target = locked if not os.access(locked, os.W_OK) else Path("/proc")
    try:
        code, line = _cli_error([str(good), str(target / "o.gguf")], tmp_path)
        assert (code, f"cannot write to {target}" in line) == (ExitCode.RUNTIME_ERROR, True), line
        assert not (target / "o.gguf").exists()
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".gguf" or p.name.endswith(".tmp")) == []


def test_cli_converts_and_the_model_answers(tmp_path: Path, hf_tokenizer: Any) -> None:
    folder = tmp_path / "hf"
    tiny_model("llama", hf_tokenizer, folder)
    out = tmp_path / "tiny.gguf"
    env = {"ASKGPT_HOME": str(tmp_path / "home")}
    result = run_askgpt(["convert", "hf", str(folder), str(out), "--type", "Q8_0"], env=env)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    assert "hf -> tiny.gguf (Q8_0)" in stderr and "peak memory" in stderr
    answer = run_askgpt(["-m", str(out), "-n", "5", "--temperature", "0", "hello"], env=env)
    assert answer.returncode == 0, answer.stderr  # random weights: any 5 tokens, but it loads and runs
    assert read_summary(out).architecture == "llama"


# --- the built-in model, round trip -------------------------------------------------------------------------

@pytest.mark.model
def test_builtin_model_round_trip_through_transformers(tmp_path: Path, hf_tokenizer: Any) -> None:
    """GGUF (Q4_1) -> transformers (dequantized) -> HF folder -> askgpt -> GGUF, compared over
    1,024 tokens of the report's default text: top-1 agreement and KL divergence."""
    from askgpt.convert.report import compare, default_text
    from askgpt.runtime.engine.llama.tools import sequence_logprobs

    path = builtin_model().path
    folder = tmp_path / "smollm2-hf"
    save_builtin_as_hf(folder, hf_tokenizer)
    # llama.cpp's own dequantization of the same weights: the F32 round trip must equal it
    dequantized = tmp_path / "builtin-f32.gguf"
    quantize_gguf(path, dequantized, output_type("F32").ftype)
    reports = {}
    for out_type, reference in (("F32", dequantized), ("F16", path)):
        out = tmp_path / f"round-trip-{out_type}.gguf"
        convert_hf(folder, out, output_type(out_type), quantizer)
        config = EngineConfig(n_ctx=512, all_logits=True)
        engines = [load_llama_engine(ModelRef(p.stem, p), config) for p in (out, reference)]
        try:
            tokens = engines[1].tokenize(default_text(), add_bos=False, special=False)[:1024]
            ours, theirs = engines
            reports[out_type] = compare(tokens, lambda t, e=ours: sequence_logprobs(e, t),  # type: ignore[misc]
                                        lambda t, e=theirs: sequence_logprobs(e, t),  # type: ignore[misc]
                                        window=512, model_name=out.name, reference_name=reference.name)
        finally:
            for engine in engines:
                engine.close()
    # bit-identical weights: identical logits on any CPU
    assert reports["F32"].kl_mean <= 1e-9 and reports["F32"].top1_agreement == 1.0
    # against the Q4_1 original, whose matrix products also round the activations to 8 bits
    # (llama.cpp's Q8_1 dot products): measured KL 0.0029 and 96.0% top-1 agreement
    assert reports["F16"].kl_mean <= 0.01
    assert reports["F16"].top1_agreement >= 0.93


# --- SentencePiece tokenizers (TinyLlama, Phi-3 mini) --------------------------------------------------------

def test_sentencepiece_model_tokenizes_and_runs_as_in_transformers(tmp_path: Path) -> None:
    """A SentencePiece BPE tokenizer trained here (byte fallback, no normalisation: as Llama 2's), a tiny Llama
    around it: llama.cpp must split text as sentencepiece does and match the logits."""
    import io

    import sentencepiece as spm

    from askgpt.convert.report import default_text

    corpus = [line for line in default_text().splitlines() if line.strip()] + TEXTS
    model_file = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=model_file, model_type="bpe",
                                   vocab_size=600, byte_fallback=True, character_coverage=1.0,
                                   bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
                                   normalization_rule_name="identity", remove_extra_whitespaces=False)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "tokenizer.model").write_bytes(model_file.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=model_file.getvalue())
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=sp.vocab_size(), hidden_size=64, intermediate_size=96,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=256, bos_token_id=1, eos_token_id=2)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    out = tmp_path / "spm.gguf"
    convert_hf(folder, out, output_type("F32"), quantizer)
    engine = load_llama_engine(ModelRef("spm", out), EngineConfig(n_ctx=256))
    try:
        for text in TEXTS[:4]:
            assert engine.tokenize(text, add_bos=False, special=False) == sp.encode(text), text
        assert engine.info.add_bos
    finally:
        engine.close()
    tokens = [1, *sp.encode(" ".join(TEXTS[:3]))][:120]
    assert np.abs(llama_logits(out, tokens) - hf_logits(model, tokens)).max() <= 1e-3


# --- interruptions, kills and a full disk: never a partial file at the destination ------------------------

def _valid_or_absent(path: Path) -> bool:
    from askgpt.runtime.models.gguf import check_gguf

    if not path.exists():
        return True
    check_gguf(path)  # raises on a partial or corrupt file
    return read_summary(path).n_params > 0


def test_ctrl_c_and_kill_at_random_points_leave_nothing_partial(tmp_path: Path, hf_tokenizer: Any) -> None:
    import random
    import signal
    import subprocess
    import time

    from conftest import ASKGPT_BIN

    folder = tmp_path / "hf"
    tiny_model("llama", hf_tokenizer, folder, hidden_size=256, intermediate_size=512, num_hidden_layers=4)
    rng = random.Random(7)
    outcomes = []
    for run in range(24):
        out_dir = tmp_path / f"out{run}"
        out_dir.mkdir()
        dst = out_dir / "m.gguf"
        sig = signal.SIGINT if run % 2 == 0 else signal.SIGKILL
        proc = subprocess.Popen([ASKGPT_BIN, "convert", "hf", str(folder), str(dst), "--type", "Q8_0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 4.0))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        outcomes.append((sig.name, proc.returncode))
        assert _valid_or_absent(dst), (run, err)
        assert b"Traceback" not in err, err
        if sig == signal.SIGINT:
            assert proc.returncode in (0, ExitCode.INTERRUPTED), (proc.returncode, err)
            if proc.returncode != 0:  # an orderly stop removes its temporary files
                assert list(out_dir.iterdir()) == [], list(out_dir.iterdir())
    assert any(code == ExitCode.INTERRUPTED for _, code in outcomes)  # some runs were cut mid-way


def _convert_interrupted_at(where: str, tmp_path: Path, hf_tokenizer: Any,
                            monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path]:
    """Run `askgpt convert hf` in-process with a Ctrl-C raised at one chosen point."""
    from typer.testing import CliRunner

    import askgpt.convert.hf.convert as module
    from askgpt.cli.app import create_app

    folder = tmp_path / "hf"
    tiny_model("llama", hf_tokenizer, folder)
    dst = tmp_path / "out" / "m.gguf"
    dst.parent.mkdir()
    original = getattr(module, where)

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        if where == "read_summary" and Path(args[0]) != dst:
            return original(*args, **kwargs)  # the staged file is read back before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(module, where, interrupted)
    result = CliRunner().invoke(create_app(), ["convert", "hf", str(folder), str(dst), "--type", "Q8_0"])
    return result, dst


def test_ctrl_c_after_the_output_is_in_place_keeps_it_and_succeeds(tmp_path: Path, hf_tokenizer: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # read_summary(dst) runs after the rename: the file is complete, so the work stands
    result, dst = _convert_interrupted_at("read_summary", tmp_path, hf_tokenizer, monkeypatch)
    assert result.exit_code == 0, result.stderr
    assert "interrupted after" in result.stderr and "it is kept" in result.stderr
    assert sorted(p.name for p in dst.parent.iterdir()) == ["m.gguf"]  # no staging file either
    assert read_summary(dst).tensors


def test_ctrl_c_before_the_rename_stops_with_nothing_left(tmp_path: Path, hf_tokenizer: Any,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    result, dst = _convert_interrupted_at("write_gguf", tmp_path, hf_tokenizer, monkeypatch)
    assert result.exit_code == ExitCode.INTERRUPTED, result.stderr
    assert result.stderr.strip() == "askgpt: interrupted"
    assert list(dst.parent.iterdir()) == []


def test_a_full_disk_leaves_the_previous_file_intact(tmp_path: Path, hf_tokenizer: Any,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import gguf

    folder = tmp_path / "hf"
    tiny_model("llama", hf_tokenizer, folder)
    dst = tmp_path / "out" / "m.gguf"
    dst.parent.mkdir()
    convert_hf(folder, dst, output_type("F16"), quantizer)
    before = dst.read_bytes()
    written = 0
    original = gguf.GGUFWriter.write_tensor_data

    def full_disk(self: Any, tensor: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal written
        written += 1
        if written > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        original(self, tensor, *args, **kwargs)

    monkeypatch.setattr(gguf.GGUFWriter, "write_tensor_data", full_disk)
    with pytest.raises(Exception, match="No space left on device") as info:
        convert_hf(folder, dst, output_type("F16"), quantizer, force=True)
    assert info.value.exit_code == ExitCode.RUNTIME_ERROR  # type: ignore[attr-defined]
    assert dst.read_bytes() == before
    assert sorted(p.name for p in dst.parent.iterdir()) == ["m.gguf"]


def test_a_killed_writer_s_leftovers_are_removed_by_the_next_run(tmp_path: Path, hf_tokenizer: Any) -> None:
    import subprocess
    import sys

    from askgpt.runtime.files import remove_stale_temporaries

    folder = tmp_path / "hf"
    tiny_model("llama", hf_tokenizer, folder)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has exited
    stale = [out / f".m.gguf.{dead_pid}.abc123.tmp", out / f".m.gguf.{dead_pid}.F16.tmp",
             out / f"..m.gguf.{dead_pid}.F16.tmp.{dead_pid}.xyz.tmp"]
    live = out / f".m.gguf.{os.getpid()}.busy.tmp"  # a writer that still runs: left alone
    for p in [*stale, live]:
        p.write_bytes(b"partial")
    convert_hf(folder, out / "m.gguf", output_type("Q8_0"), quantizer)
    assert sorted(p.name for p in out.iterdir()) == sorted(["m.gguf", live.name])
    assert remove_stale_temporaries(out / "m.gguf") == []
