"""Images: the loader, the torch-free weights reader, the ONNX classifier, OCR, the projector."""

from __future__ import annotations

import io
import os
import pickle
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from rendered_images import char_error_rate, receipt

from askgpt.runtime.errors import ExitCode, ImageError, InputNotFoundError
from askgpt.vision.classifier import FP32_NODES, class_names, data_path, ensure_onnx, load_classifier, quantize_int8
from askgpt.vision.images import MAX_PIXELS, decode_image, load_image
from askgpt.vision.mobilenet import preprocess
from askgpt.vision.pipeline import ImageMode, ImagePipeline, OcrMode, VisionConfig
from askgpt.vision.projector import Projector, fit_ridge
from askgpt.vision.torch_pickle import MAGIC, PROTOCOL, WeightsError, load_legacy_state_dict
from conftest import run_askgpt


def sample(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


PHOTOS = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png"]
WEIGHTS = data_path("mobilenet_v2-b0353104.pth")


def png_bytes(img: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


# --- weights without torch -------------------------------------------------------------------------------

def test_weights_read_without_torch_equal_torch_s_own_reading() -> None:
    import torch

    ours = load_legacy_state_dict(WEIGHTS)
    theirs = torch.load(WEIGHTS, weights_only=True)
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert ours[name].shape == tuple(tensor.shape) and np.array_equal(ours[name], tensor.numpy()), name


def _legacy_file(obj_bytes: bytes) -> bytes:
    """A legacy-layout file whose state-dict pickle is ``obj_bytes``."""
    header = pickle.dumps(MAGIC, protocol=2) + pickle.dumps(PROTOCOL, protocol=2)
    header += pickle.dumps({"protocol_version": PROTOCOL, "little_endian": True}, protocol=2)
    return header + obj_bytes + pickle.dumps([], protocol=2)


class _Exploit:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch {marker}",))


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(), protocol=2).replace(b"{marker}", str(marker).encode())
    evil = tmp_path / "evil.pth"
    evil.write_bytes(_legacy_file(payload))
    with pytest.raises(WeightsError, match="posix.system|os.system|never needs"):
        load_legacy_state_dict(evil)
    assert not marker.exists()


@pytest.mark.parametrize("cut", [0, 10, 100, 5000, 14_000_000])
def test_truncated_weights_are_a_clean_error(tmp_path: Path, cut: int) -> None:
    bad = tmp_path / "cut.pth"
    bad.write_bytes(WEIGHTS.read_bytes()[:cut])
    with pytest.raises(WeightsError):
        load_legacy_state_dict(bad)


# --- the ONNX graph ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return load_classifier(tmp_path_factory.mktemp("cache"), threads=2)


def test_onnx_graph_matches_torchvision_on_real_photos(classifier) -> None:  # type: ignore[no-untyped-def]
    import torch
    import torchvision

    model = torchvision.models.mobilenet_v2()
    model.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    model.eval()
    reference = torchvision.transforms.Compose([
        torchvision.transforms.Resize(256), torchvision.transforms.CenterCrop(224), torchvision.transforms.ToTensor(),
        torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    for name in PHOTOS:
        img = Image.open(sample(name)).convert("RGB")
        x = preprocess(np.asarray(img))
        assert np.abs(x - reference(img).numpy()).max() < 1e-5  # the same preprocessing, without torch
        ours, _ = classifier.run(x[None])
        with torch.no_grad():
            theirs = model(torch.from_numpy(x[None])).numpy()
        # The README's figure. Measured: at most 1.3e-5 on logits up to 21 (a few float32
        # steps); the bound leaves room for another CPU's summation order.
        assert np.abs(ours - theirs).max() <= 5e-5, name
        assert list(np.argsort(-ours[0])[:5]) == list(np.argsort(-theirs[0])[:5]), name


@pytest.mark.parametrize("name, expected", [
    ("chelsea.png", {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"}),
    ("coffee.png", {"espresso", "cup", "coffee mug"}),
    ("motorcycle_left.png", {"moped", "motor scooter", "crash helmet"}),
])
def test_classifier_recognises_real_photos(classifier, name: str, expected: set[str]) -> None:  # type: ignore[no-untyped-def]
    features = classifier.encode(load_image(str(sample(name))))
    assert features.labels[0].name in expected
    assert features.pooled is not None and features.pooled.shape == (1280,)


def test_int8_variant_keeps_the_stem_in_fp32_and_the_confident_labels(tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    fp32 = ensure_onnx(tmp_path).onnx
    calibration = [preprocess(load_image(str(sample(n))).pixels) for n in (  # benchmarks/vision.py's set
        "horse.png", "camera.png", "coins.png", "page.png", "hubble_deep_field.jpg", "retina.jpg",
        "brick.png", "grass.png", "gravel.png", "color.png", "logo.png", "immunohistochemistry.png")
        if sample(n).exists()]
    int8 = tmp_path / "int8.onnx"
    quantize_int8(fp32, int8, calibration)
    nodes = {n.name: n for n in onnx.load(str(int8)).graph.node}
    convs = [n for n in nodes.values() if n.op_type == "Conv"]
    stem = {n.name for n in convs if not any(i.endswith("DequantizeLinear_Output") for i in n.input[1:2])}
    assert stem == set(FP32_NODES)  # every other convolution reads int8 weights
    assert sum(n.op_type == "DequantizeLinear" for n in nodes.values()) > 100
    runs = {p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)}
    for name in ("chelsea.png", "coffee.png"):  # top-1 leads by > 0.5 in probability
        x = preprocess(load_image(str(sample(name))).pixels)[None]
        tops = {p: int(np.argmax(s.run(["logits"], {"pixel_values": x})[0])) for p, s in runs.items()}
        assert tops[fp32] == tops[int8], name


def test_onnx_file_is_cached_atomically_and_keyed_by_the_weights(tmp_path: Path) -> None:
    notes: list[str] = []
    first = ensure_onnx(tmp_path, notify=notes.append)
    again = ensure_onnx(tmp_path, notify=notes.append)
    assert first == again and len(notes) == 1  # built once, with one note
    assert first.weights_sha256[:8] == "b0353104"  # torchvision's own file
    assert [p.name for p in (tmp_path / "vision").iterdir()] == [first.onnx.name]  # no temporary left


def test_class_names_are_the_1000_imagenet_classes() -> None:
    names = class_names()
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"


# --- the loader ----------------------------------------------------------------------------------------

def test_exif_orientation_transparency_16_bit_and_animation() -> None:
    tall = Image.new("RGB", (20, 40), "red")
    exif = tall.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    rotated = decode_image(png_bytes(tall, "JPEG", exif=exif), "rot.jpg")
    assert (rotated.width, rotated.height) == (40, 20)
    clear = decode_image(png_bytes(Image.new("RGBA", (4, 4), (0, 0, 0, 0))), "clear.png")
    assert clear.pixels.min() == 255  # transparency is laid on white
    deep = decode_image(png_bytes(Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)), "16.png")
    assert deep.pixels.dtype == np.uint8 and deep.pixels.max() == 255
    frames = [Image.new("RGB", (8, 8), c) for c in ("blue", "green")]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    gif = decode_image(buf.getvalue(), "anim.gif")
    assert gif.pixels[0, 0, 2] > 200 and gif.pixels[0, 0, 1] < 50  # the first frame


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size (the rest is a 1x1 image's data)."""
    data = bytearray(png_bytes(Image.new("RGB", (1, 1))))
    data[16:24] = struct.pack(">II", width, height)
    import zlib

    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


@pytest.mark.parametrize("data, message", [
    (b"", "empty"),
    (b"hello, not an image", "not an image"),
    (png_bytes(Image.new("RGB", (64, 64), "blue"))[:60], "damaged"),
    (_png_claiming(100_000, 100_000), "limit"),
    (png_bytes(Image.new("RGB", (8, 8)), "TIFF"), "not an image"),
])
def test_bad_images_are_one_clean_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageError, match=message) as err:
        decode_image(data, "x.png")
    assert err.value.exit_code is ExitCode.RUNTIME_ERROR


def test_missing_image_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(InputNotFoundError):
        load_image(str(tmp_path / "nope.png"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2048))
def test_loader_never_fails_other_than_cleanly(data: bytes) -> None:
    try:
        image = decode_image(b"\x89PNG\r\n\x1a\n" + data, "fuzz.png")
    except ImageError:
        return
    assert image.pixels.ndim == 3 and image.pixels.shape[2] == 3
    assert image.width * image.height <= MAX_PIXELS


# --- OCR -----------------------------------------------------------------------------------------------

def test_ocr_reads_a_rendered_receipt_in_order() -> None:
    from askgpt.vision.images import LoadedImage
    from askgpt.vision.ocr import OcrReader

    case = receipt()
    found = OcrReader(threads=2).encode(LoadedImage("r", np.asarray(case.image), "PNG", "0"))
    assert char_error_rate("\n".join(case.lines), "\n".join(found.text_lines)) < 0.05
    assert any("9.85" in line for line in found.text_lines)
    assert [line.replace(" ", "") for line in found.text_lines][0] == "CORNERCAFE"  # reading order


# --- the projector -------------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(st.integers(2, 6), st.integers(1, 4), st.floats(0.01, 10.0), st.integers(0, 2**31 - 1))
def test_ridge_fit_equals_numpy_lstsq(d_in: int, d_out: int, lam: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(20, d_in)), rng.normal(size=(20, d_out))
    w, b = fit_ridge(x, y, lam)
    # Reference: centre, then least squares on the system augmented with sqrt(lam) I.
    xc, yc = x - x.mean(0), y - y.mean(0)
    aug_x = np.vstack([xc, np.sqrt(lam) * np.eye(d_in)])
    aug_y = np.vstack([yc, np.zeros((d_in, d_out))])
    ref = np.linalg.lstsq(aug_x, aug_y, rcond=None)[0]
    assert np.allclose(w, ref, atol=1e-4)
    assert np.allclose(b, y.mean(0) - x.mean(0) @ ref, atol=1e-4)


def test_stored_projector_is_used_only_for_the_same_two_models(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    proj = Projector(rng.normal(size=(6, 4)).astype(np.float32), np.zeros(4, np.float32),
                     rng.normal(size=(10, 6)).astype(np.float32), 1.0, 2.0, "enc-a", "llm-a")
    path = tmp_path / "p.npz"
    proj.save(path)
    loaded = Projector.load(path, encoder_id="enc-a", model_id="llm-a")
    assert loaded is not None and np.array_equal(loaded.w, proj.w)
    assert Projector.load(path, encoder_id="enc-a", model_id="llm-b") is None  # the model changed: refit
    assert Projector.load(path, encoder_id="enc-b", model_id="llm-a") is None
    rows = proj.rows(rng.normal(size=6).astype(np.float32), [3, 1, 2])
    assert rows.shape == (4, 4) and np.allclose(np.linalg.norm(rows, axis=1), 2.0, atol=1e-5)


# --- the real model ------------------------------------------------------------------------------------

def mentions(word: str, text: str) -> bool:
    """``word`` (or its plural) as a whole word: "cat" is not in "indicates"."""
    return re.search(rf"\b{re.escape(word)}s?\b", text, re.I) is not None


def test_mentions_matches_whole_words_only() -> None:
    assert mentions("cat", "A cat.") and mentions("cat", "Two Cats sit") and not mentions("cat", "it indicates")


@pytest.mark.model
def test_cat_photo_answer_mentions_a_cat(tmp_path: Path) -> None:
    """What this shows: the image reaches the model as a block naming the classifier's
    labels ("tabby", "Egyptian cat", ...), so a right answer copies "cat" from the prompt;
    it tests that the block is built from the pixels (a neutral file name, no "cat" in
    the question) and that the model uses it, not that a 135M model can see."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(sample("chelsea.png").read_bytes())
    result = run_askgpt(["-t", "0", "What is in this picture?", "-i", str(photo)])
    assert result.returncode == 0, result.stderr
    assert mentions("cat", result.stdout.decode())


@pytest.mark.model
def test_receipt_total_is_answered_from_the_ocr_text(real_engine, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                      isolated_home: Path) -> None:
    # The margin the exact "9.85" relies on, checked: the same prompt in-process (the OCR
    # block and the default system prompt), greedy without the repeat penalty, each step's
    # first choice leading its runner-up (measured: 0.60 nats at the closest step; required 0.2, far
    # above the last-bit differences between CPUs' kernels). The CLI then runs the same way.
    from test_real_model import greedy_margins

    from askgpt.runtime.prompting.generate import GenerationConfig, prepare
    from askgpt.runtime.prompting.request import DEFAULT_SYSTEM, Request

    path = tmp_path / "scan.png"
    receipt().image.save(path)
    blocks, _ = ImagePipeline(VisionConfig(), tmp_path / "cache").encode([load_image(str(path))], None,
                                                                          question="What is the total due?")
    prompt = prepare(real_engine, Request("What is the total due?", system=DEFAULT_SYSTEM, images=tuple(blocks)),
                     GenerationConfig(32))
    text, lead = greedy_margins(real_engine, list(prompt.parts), 32, until="9.85")
    assert "9.85" in text and lead >= 0.2, (text, lead)
    (isolated_home / "config").mkdir(parents=True, exist_ok=True)
    (isolated_home / "config" / "config.toml").write_text("repeat_penalty = 1.0\n")
    result = run_askgpt(["-t", "0", "What is the total due?", "-i", str(path), "--stats"])
    assert result.returncode == 0, result.stderr
    assert "9.85" in result.stdout.decode()
    assert b"ocr " in result.stderr and b"encode " in result.stderr  # per-image timings


@pytest.mark.model
def test_two_images_are_both_used_and_stdin_can_be_an_image(tmp_path: Path) -> None:
    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.engine import load_llama_engine
    from askgpt.runtime.models.registry import builtin_model
    from askgpt.runtime.prompting.request import Request
    from askgpt.vision.images import load_image as load

    pipeline = ImagePipeline(VisionConfig(ocr=OcrMode.OFF), tmp_path)
    blocks, reports = pipeline.encode([load(str(sample("chelsea.png"))), load(str(sample("coffee.png")))], None)
    assert [r.source for r in reports] == [str(sample("chelsea.png")), str(sample("coffee.png"))]
    engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=2048))
    try:
        from askgpt.runtime.prompting.generate import GenerationConfig, prepare

        text = prepare(engine, Request("Describe both.", images=tuple(blocks)), GenerationConfig(64)).text
    finally:
        engine.close()
    assert "Egyptian cat" in text and "espresso" in text and text.count("<image source=") == 2
    piped = run_askgpt(["-t", "0", "What is in this picture?", "-i", "-"], input=sample("chelsea.png").read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert mentions("cat", piped.stdout.decode())  # copied from the block, as in the test above


@pytest.mark.model
def test_embedding_rows_move_the_next_token_distribution(real_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from askgpt.runtime.engine.base import EmbeddingRows
    from askgpt.runtime.models.registry import builtin_model
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare
    from askgpt.runtime.prompting.request import Request
    from askgpt.vision.pipeline import TargetModel

    target = TargetModel(builtin_model().path, real_engine.info.n_embd,
                         lambda text: real_engine.tokenize(text, add_bos=False, special=False))
    pipeline = ImagePipeline(VisionConfig(ocr=OcrMode.OFF, mode=ImageMode.EMBED), tmp_path)
    dists = []
    for name in ("chelsea.png", "rocket.jpg"):
        blocks, reports = pipeline.encode([load_image(str(sample(name)))], target)
        assert reports[0].rows == 4 and blocks[0].rows is not None
        assert blocks[0].rows.shape == (4, real_engine.info.n_embd)
        prompt = prepare(real_engine, Request("What is in this picture?", images=tuple(blocks)),
                         GenerationConfig(32))
        assert any(isinstance(p, EmbeddingRows) for p in prompt.parts)
        dists.append(np.exp(real_engine.next_token_logprobs(prompt.parts)))
    assert np.abs(dists[0] - dists[1]).sum() > 1e-2  # a different image, a different next token distribution
    stored = list((tmp_path / "vision").glob("projector-*.npz"))
    assert len(stored) == 1  # fitted once, reused for the second image


@pytest.mark.model
@pytest.mark.parametrize("mode", ["embed", "both"])
def test_cli_answers_with_embedding_rows(mode: str) -> None:
    result = run_askgpt(["-t", "0", "-n", "24", "--image-mode", mode, "What is this?", "-i", str(sample("coffee.png"))])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


@pytest.mark.parametrize("make, code, words", [
    (lambda d: d / "missing.png", 3, "image not found"),
    (lambda d: (d / "notes.png").write_text("just text") and d / "notes.png", 1, "not an image"),
    (lambda d: (d / "empty.jpg").write_bytes(b"") or d / "empty.jpg", 1, "empty"),
    (lambda d: (d / "cut.png").write_bytes(sample("chelsea.png").read_bytes()[:3000]) and d / "cut.png", 1,
     "damaged"),
    (lambda d: (d / "huge.png").write_bytes(_png_claiming(90_000, 90_000)) and d / "huge.png", 1, "limit"),
    (lambda d: d, 3, "folder"),
])
def test_bad_image_files_end_in_one_line_and_the_documented_code(tmp_path: Path, make, code: int,
                                                                   words: str) -> None:
    path = make(tmp_path)
    result = run_askgpt(["describe", "-i", str(path)])
    assert result.returncode == code, result.stderr
    err = result.stderr.decode()
    assert words in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert result.stdout == b""


def test_without_ocr_installed_auto_mode_uses_the_classifier_and_says_so(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import askgpt.vision.ocr as ocr

    monkeypatch.setattr(ocr, "ocr_available", lambda: False)
    notes: list[str] = []
    pipeline = ImagePipeline(VisionConfig(ocr=OcrMode.AUTO), tmp_path, notify=notes.append)
    image = load_image(str(sample("chelsea.png")))
    blocks, reports = pipeline.encode([image, image], None)
    assert "Egyptian cat" in blocks[0].text and "text in it" not in blocks[0].text.lower()
    assert reports[0].ocr_seconds == 0.0
    assert sum("OCR is not installed" in n for n in notes) == 1  # said once, not per image


@pytest.mark.model
def test_an_image_too_big_for_the_context_is_refused_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    receipt().image.save(path)
    # Two copies of the receipt: its text blocks alone are more than the 128 tokens left.
    result = run_askgpt(["--ctx", "256", "-n", "128", "What is the total due?", "-i", str(path), "-i", str(path)])
    assert result.returncode == 1, result.stderr
    err = result.stderr.decode()
    assert "only 128 fit (context 256 tokens, 128 kept for the answer)" in err and "Traceback" not in err
