"""CLIP encoders on ONNX Runtime (vision/clip.py, convert/clip.py) and a model's own vision
projector (mmproj) through llama.cpp. No CLIP weights can be downloaded here: the models
are small open_clip configs with random weights made by the test, saved as a checkpoint
and set up from it exactly as a user's own weights would be."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmproj_file import write_mmproj
from PIL import Image

from askgpt.convert.clip import ClipSetupConfig, setup_clip
from askgpt.vision.clip import ClipEncoder, Preprocess, choose_encoder, clip_root, preprocess, read_meta
from askgpt.vision.images import decode_image, load_image
from conftest import run_askgpt

open_clip = pytest.importorskip("open_clip")
torch = pytest.importorskip("torch")

TINY = {"embed_dim": 64,
        "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 1}}
PHOTOS = ("chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg")


def builtin_model_path() -> Path:
    from askgpt.runtime.models.registry import builtin_model

    return builtin_model().path


def sample(name: str) -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data" / name


class Tiny:
    def __init__(self, root: Path) -> None:
        self.config = root / "tiny-clip.json"
        self.config.write_text(json.dumps(TINY))
        open_clip.add_model_config(str(self.config))
        torch.manual_seed(0)
        self.model = open_clip.create_model("tiny-clip", pretrained=None, pretrained_text=False).eval()
        from safetensors.torch import save_file

        self.checkpoint = root / "tiny-clip.safetensors"
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(self.checkpoint))
        self.data = root / "data"
        self.report = setup_clip(ClipSetupConfig("tiny-clip", checkpoint=self.checkpoint,
                                                 model_config=self.config, threads=2), self.data)

    def install(self, home: Path) -> Path:
        """Copy the set-up encoder into an ASKGPT_HOME's data folder."""
        dst = clip_root(home / "data") / "tiny-clip"
        shutil.copytree(self.report.folder, dst)
        return dst


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    return Tiny(tmp_path_factory.mktemp("clip"))


# --- setup: ONNX files, parity, int8, metadata ---------------------------------------------------------

def test_setup_writes_the_towers_the_concepts_and_the_metadata(tiny: Tiny) -> None:
    folder = tiny.report.folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "clip.json", "concepts.npz", "text.int8.onnx", "text.onnx", "visual.int8.onnx", "visual.onnx"]
    meta = read_meta(folder)
    assert meta.source.startswith("checkpoint:") and not meta.random
    assert meta.preprocess == Preprocess((64, 64))
    assert meta.embed_dim == 64 and meta.token_width == 64
    assert meta.parity["pooled_max_abs_diff"] <= 1e-4 and meta.parity["tokens_max_abs_diff"] <= 1e-4
    from askgpt.runtime.files import sha256_file

    for name, entry in meta.files.items():
        assert sha256_file(folder / name) == entry["sha256"]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def test_onnx_towers_match_pytorch_on_real_photos(tiny: Tiny) -> None:
    visual = tiny.model.visual
    visual.output_tokens = True
    fp32 = ClipEncoder(tiny.report.folder, threads=2, int8=False)
    int8 = ClipEncoder(tiny.report.folder, threads=2, int8=True)
    assert (fp32.model_file, int8.model_file) == ("visual.onnx", "visual.int8.onnx")
    for name in PHOTOS:
        image = load_image(str(sample(name)))
        with torch.no_grad():
            pooled, tokens = visual(torch.from_numpy(preprocess(image.pixels, fp32.meta.preprocess)))
        got_pooled, got_tokens = fp32.embed(image)
        assert np.abs(got_pooled - pooled[0].numpy()).max() <= 1e-4
        assert got_tokens is not None and np.abs(got_tokens - tokens[0].numpy()).max() <= 1e-4
        q_pooled, _ = int8.embed(image)
        cosine = q_pooled @ got_pooled / (np.linalg.norm(q_pooled) * np.linalg.norm(got_pooled))
        assert cosine >= 0.99


def test_concept_embeddings_are_the_text_tower_s(tiny: Tiny) -> None:
    encoder = ClipEncoder(tiny.report.folder, threads=2)
    names = encoder.concepts.names
    assert len(names) > 5000 and "cat" in names
    ids = open_clip.get_tokenizer("tiny-clip")([f"a photo of a {n}" for n in ("cat", "rocket")])
    with torch.no_grad():
        ref = tiny.model.encode_text(ids).numpy()
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    got = encoder.concepts.embeddings[[names.index("cat"), names.index("rocket")]]
    assert np.abs(got - ref).max() <= 1e-4
    assert np.allclose(encoder.concepts.proj, tiny.model.visual.proj.detach().numpy())


def test_encode_gives_tags_pooled_and_region_rows(tiny: Tiny) -> None:
    features = ClipEncoder(tiny.report.folder, threads=2).encode(load_image(str(sample("chelsea.png"))))
    assert len(features.labels) == 5 and all(0 < lab.score < 1 for lab in features.labels)
    assert [lab.score for lab in features.labels] == sorted((lab.score for lab in features.labels), reverse=True)
    assert features.pooled is not None and np.isclose(np.linalg.norm(features.pooled), 1.0, atol=1e-5)
    assert features.regions is not None and features.regions.shape == (4, 64)


def test_setup_twice_replaces_the_encoder_atomically(tiny: Tiny, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = setup_clip(ClipSetupConfig("tiny-clip", random=True, model_config=tiny.config, int8=False), data)
    assert not (first.folder / "visual.int8.onnx").exists()
    second = setup_clip(ClipSetupConfig("tiny-clip", checkpoint=tiny.checkpoint, model_config=tiny.config), data)
    assert second.folder == first.folder and read_meta(second.folder).source.startswith("checkpoint:")
    assert (second.folder / "visual.int8.onnx").is_file()
    assert [p.name for p in clip_root(data).iterdir()] == ["tiny-clip"]


# --- preprocessing: open_clip's transform, reproduced without torch ---------------------------------------

def _open_clip_pixels(img: Image.Image, cfg: Preprocess) -> np.ndarray:
    transform = open_clip.image_transform(cfg.size if cfg.size[0] != cfg.size[1] else cfg.size[0], is_train=False,
                                          mean=cfg.mean, std=cfg.std, resize_mode=cfg.resize_mode,
                                          interpolation=cfg.interpolation)
    return transform(img).numpy()[None]


def _file(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _photo(size: tuple[int, int]) -> Image.Image:
    return Image.open(sample("astronaut.png")).convert("RGB").resize(size)


@pytest.mark.parametrize("cfg", [
    Preprocess((224, 224)), Preprocess((64, 64)), Preprocess((224, 224), interpolation="bilinear"),
    Preprocess((224, 224), resize_mode="squash"), Preprocess((224, 224), resize_mode="longest", fill=0),
    Preprocess((160, 224)),
])
@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (50, 90), (1000, 37)])
def test_preprocess_equals_open_clip_s_transform(cfg: Preprocess, size: tuple[int, int]) -> None:
    img = _photo(size)
    ours = preprocess(np.asarray(img), cfg)
    assert ours.shape == (1, 3, *cfg.size)
    assert np.abs(ours - _open_clip_pixels(img, cfg)).max() <= 1e-6


@pytest.mark.parametrize("mode", ["L", "P", "RGB", "I;16"])
def test_preprocess_after_the_loader_equals_open_clip_for_each_mode(mode: str) -> None:
    cfg = Preprocess((224, 224))
    img = _photo((320, 240))
    img = img.convert(mode) if mode != "I;16" else Image.fromarray(
        (np.asarray(img.convert("L"), np.uint16) * 257).astype(np.uint16))
    loaded = decode_image(_file(img, "PNG"), "x.png")
    reference = Image.open(io.BytesIO(_file(img, "PNG")))
    if mode == "I;16":  # open_clip's convert("RGB") clips 16-bit values; askgpt rescales them
        reference = Image.fromarray(loaded.pixels)
    assert np.abs(preprocess(loaded.pixels, cfg) - _open_clip_pixels(reference.convert("RGB"), cfg)).max() <= 1e-6


def test_transparency_is_laid_on_white_before_open_clip_s_transform() -> None:
    # A deliberate difference: open_clip's convert("RGB") drops alpha (transparent pixels show
    # whatever colour they hold); askgpt lays them on white, as the image looks.
    cfg = Preprocess((64, 64))
    rgba = Image.new("RGBA", (80, 60), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (20, 10, 60, 50))
    loaded = decode_image(_file(rgba, "PNG"), "logo.png")
    white = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    assert np.abs(preprocess(loaded.pixels, cfg) - _open_clip_pixels(white, cfg)).max() <= 1e-6


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_first(orientation: int) -> None:
    cfg = Preprocess((64, 64))
    img = _photo((120, 80))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _file(img, "JPEG", exif=exif.tobytes(), quality=95)
    loaded = decode_image(data, "photo.jpg")
    from PIL import ImageOps

    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    assert (loaded.width, loaded.height) == upright.size == ((120, 80) if orientation == 3 else (80, 120))
    assert np.abs(preprocess(loaded.pixels, cfg) - _open_clip_pixels(upright, cfg)).max() <= 1e-6


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.sampled_from(["shortest", "longest", "squash"]),
       st.integers(8, 96))
def test_preprocess_matches_for_any_size(width: int, height: int, mode: str, target: int) -> None:
    cfg = Preprocess((target, target), resize_mode=mode)
    img = _photo((width, height))
    ours = preprocess(np.asarray(img), cfg)
    assert ours.shape == (1, 3, target, target)
    try:
        reference = _open_clip_pixels(img, cfg)
    except ValueError:  # a sliver that open_clip resizes to 0 pixels; askgpt keeps 1
        assert mode == "longest" and min(width, height) * target < max(width, height)
        return
    assert np.abs(ours - reference).max() <= 1e-6


# --- choosing an encoder, and its errors ---------------------------------------------------------------

def test_auto_uses_clip_when_set_up_and_builtin_otherwise(tiny: Tiny, tmp_path: Path) -> None:
    from askgpt.vision.clip import EncoderNotFoundError

    empty = tmp_path / "empty"
    assert choose_encoder(empty, "auto") is None
    with pytest.raises(EncoderNotFoundError, match="no CLIP encoder is set up") as info:
        choose_encoder(empty, "clip")
    assert "askgpt vision setup" in str(info.value)
    meta = choose_encoder(tiny.data, "auto")
    assert meta is not None and meta.name == "tiny-clip"
    assert choose_encoder(tiny.data, "builtin") is None
    with pytest.raises(EncoderNotFoundError, match="no image encoder named 'other'"):
        choose_encoder(tiny.data, "other")


@pytest.mark.model  # describe loads the built-in model before it finds no CLIP encoder
def test_encoder_clip_without_setup_names_the_command(tmp_path: Path) -> None:
    result = run_askgpt(["describe", "-i", str(sample("coffee.png")), "--encoder", "clip"])
    assert result.returncode == 3
    err = result.stderr.decode()
    assert "no CLIP encoder is set up" in err and "askgpt vision setup" in err and len(err.splitlines()) == 1


@pytest.mark.model  # describe loads the built-in model before it reads the encoder
def test_a_damaged_onnx_file_is_one_line_and_exit_1(tiny: Tiny, isolated_home: Path) -> None:
    folder = tiny.install(isolated_home)
    target = folder / "visual.int8.onnx"
    target.write_bytes(b"\0garbage" * (target.stat().st_size // 8) + b"\0" * (target.stat().st_size % 8))
    result = run_askgpt(["describe", "-i", str(sample("coffee.png"))])
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "visual.int8.onnx is damaged" in err and "askgpt vision setup" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_vision_status_lists_files_hashes_and_parity(tiny: Tiny, isolated_home: Path) -> None:
    folder = tiny.install(isolated_home)
    result = run_askgpt(["vision", "status", "--json", "--verify"])
    assert result.returncode == 0, result.stderr
    (entry,) = json.loads(result.stdout)["encoders"]
    assert entry["name"] == "tiny-clip" and entry["image_tower"] == "visual.int8.onnx"
    assert {f["state"] for f in entry["files"].values()} == {"ok"}
    (folder / "text.onnx").write_bytes(b"changed")
    text = run_askgpt(["vision", "status"]).stdout.decode()
    assert "text.onnx" in text and "missing or wrong size" in text and "ONNX vs PyTorch" in text
    assert run_askgpt(["vision", "rm", "tiny-clip"]).returncode == 0
    assert not folder.exists()
    assert "no CLIP encoder set up" in run_askgpt(["vision", "status"]).stdout.decode()


def test_setup_refuses_a_missing_source_and_bad_names(tmp_path: Path) -> None:
    from askgpt.runtime.errors import UsageError

    with pytest.raises(UsageError, match="exactly one of"):
        setup_clip(ClipSetupConfig("ViT-B-32"), tmp_path)
    with pytest.raises(UsageError, match="cannot name an encoder"):
        setup_clip(ClipSetupConfig("ViT-B-32", random=True, name="builtin"), tmp_path)
    result = run_askgpt(["vision", "setup", "ViT-B-32", "--checkpoint", str(tmp_path / "none.pt")])
    assert result.returncode == 2 and b"checkpoint not found" in result.stderr


# --- the projector, fitted from CLIP text embeddings to the model's token embeddings --------------------

@pytest.mark.model
def test_clip_rows_move_the_next_token_distribution_and_the_fit_is_cached(tiny: Tiny, real_engine,  # type: ignore[no-untyped-def]
                                                                        tmp_path: Path) -> None:
    from askgpt.runtime.models.registry import builtin_model
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare
    from askgpt.runtime.prompting.request import Request
    from askgpt.vision.pipeline import ImageMode, ImagePipeline, OcrMode, VisionConfig, target_model

    target = target_model(real_engine, builtin_model().path, None, threads=2)
    pipeline = ImagePipeline(VisionConfig(ocr=OcrMode.OFF, mode=ImageMode.EMBED, encoder="tiny-clip"), tmp_path,
                             data_dir=tiny.data)
    dists = []
    for name in ("chelsea.png", "rocket.jpg"):
        blocks, reports = pipeline.encode([load_image(str(sample(name)))], target)
        rows = blocks[0].rows
        # the whole image, 2x2 regions, the 3 top concepts
        assert rows is not None and rows.shape == (8, real_engine.info.n_embd) and reports[0].rows == 8
        prompt = prepare(real_engine, Request("What is in this picture?", images=tuple(blocks)),
                         GenerationConfig(32))
        dists.append(np.exp(real_engine.next_token_logprobs(prompt.parts)))
    assert np.abs(dists[0] - dists[1]).sum() > 1e-2
    (stored,) = (tmp_path / "vision").glob("projector-clip-*.npz")
    meta = read_meta(tiny.report.folder)
    from askgpt.vision.projector import Projector, table_identity

    fit = Projector.load(stored, encoder_id=meta.identity, model_id=table_identity(builtin_model().path))
    assert fit is not None and fit.w.shape == (64, real_engine.info.n_embd)
    assert np.allclose(fit.class_vectors, ClipEncoder(tiny.report.folder, threads=1).concepts.embeddings)


@pytest.mark.model
def test_a_projector_for_another_model_is_refused(tiny: Tiny, isolated_home: Path) -> None:
    from askgpt.vision.projector import TRAINED_FILE, Projector

    folder = tiny.install(isolated_home)
    rng = np.random.default_rng(0)
    Projector(rng.normal(size=(64, 576)).astype(np.float32), np.zeros(576, np.float32),
              rng.normal(size=(10, 64)).astype(np.float32), 1.0, 1.0, read_meta(folder).identity,
              "another-language-model").save(folder / TRAINED_FILE)
    result = run_askgpt(["describe", "-i", str(sample("coffee.png")), "--image-mode", "embed"])
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "was made for another encoder or language model" in err and "Traceback" not in err


@pytest.mark.model
def test_cli_answers_after_vision_setup_random(tiny: Tiny) -> None:
    setup = run_askgpt(["vision", "setup", "tiny-clip", "--random", "--model-config", str(tiny.config)],
                       timeout=300)
    assert setup.returncode == 0, setup.stderr
    assert b"ONNX vs PyTorch" in setup.stderr and b"random weights" in setup.stderr
    for mode in ("text", "both"):
        result = run_askgpt(["-t", "0", "-n", "16", "describe this", "-i", str(sample("chelsea.png")),
                             "--image-mode", mode, "--stats"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()
        assert b"random weights" in result.stderr  # said on every use: its tags are meaningless
        assert (b"8 embedding rows" if mode == "both" else b"0 embedding rows") in result.stderr


# --- a model's own vision projector (mmproj) through llama.cpp ----------------------------------------------

@pytest.mark.model
def test_mmproj_loads_and_answers(tmp_path: Path) -> None:
    mmproj = write_mmproj(tmp_path / "mmproj-tiny.gguf", 576)
    result = run_askgpt(["-t", "0", "-n", "16", "describe this", "-i", str(sample("chelsea.png")),
                         "--mmproj", str(mmproj), "--stats"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert b"16 embedding rows" in result.stderr  # (32/8)^2 patches, projected to the model's width
    assert b"clip_" not in result.stderr  # llama.cpp's own log lines stay out of stderr


@pytest.mark.model
def test_mmproj_rows_follow_the_image(real_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from askgpt.runtime.models.registry import builtin_model
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare
    from askgpt.runtime.prompting.request import Request
    from askgpt.vision.pipeline import ImagePipeline, OcrMode, VisionConfig, target_model

    target = target_model(real_engine, builtin_model().path, write_mmproj(tmp_path / "mm.gguf", 576), threads=2)
    pipeline = ImagePipeline(VisionConfig(ocr=OcrMode.OFF), tmp_path)
    segments, dists = [], []
    for name in ("chelsea.png", "rocket.jpg"):
        blocks, _ = pipeline.encode([load_image(str(sample(name)))], target)
        segments.append(blocks[0].segments)
        prompt = prepare(real_engine, Request("What is in this picture?", images=tuple(blocks)),
                         GenerationConfig(32))
        dists.append(np.exp(real_engine.next_token_logprobs(prompt.parts)))
    assert all(len(s) == 1 and s[0].rows.shape == (16, 576) and s[0].causal for s in segments)
    assert np.abs(segments[0][0].rows - segments[1][0].rows).max() > 1e-3
    assert np.abs(dists[0] - dists[1]).sum() > 1e-2


@pytest.mark.model
def test_an_mmproj_for_another_model_is_exit_4(tmp_path: Path) -> None:
    mmproj = write_mmproj(tmp_path / "mmproj-wide.gguf", 1024)  # a projector for a 1024-wide model
    result = run_askgpt(["describe", "-i", str(sample("coffee.png")), "--mmproj", str(mmproj)])
    assert result.returncode == 4
    err = result.stderr.decode()
    assert "does not work with" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_missing_mmproj_is_exit_3(tmp_path: Path) -> None:
    result = run_askgpt(["describe", "-i", str(sample("coffee.png")), "--mmproj", str(tmp_path / "nope.gguf")])
    assert result.returncode == 3 and b"vision projector not found" in result.stderr


def test_mmproj_is_found_beside_a_model_and_registered_with_it(tmp_path: Path) -> None:
    from askgpt.runtime.models.registry import ModelRef, find_mmproj

    model = tmp_path / "vlm.gguf"
    model.write_bytes(b"x")
    ref = ModelRef("vlm", model)
    assert find_mmproj(ref, None, local=True) is None
    (tmp_path / "mmproj-vlm.gguf").write_bytes(b"x")
    assert find_mmproj(ref, None, local=True) == tmp_path / "mmproj-vlm.gguf"
    (tmp_path / "mmproj-other.gguf").write_bytes(b"x")
    assert find_mmproj(ref, None, local=True) is None  # two candidates: never guess
    registered = tmp_path / "elsewhere.gguf"
    registered.write_bytes(b"x")
    assert find_mmproj(ModelRef("vlm", model, mmproj=registered), None, local=True) == registered
    assert find_mmproj(ModelRef("vlm", model, mmproj=registered), str(model), local=True) == model.resolve()


def test_answering_with_a_clip_encoder_never_imports_torch(tiny: Tiny, isolated_home: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    tiny.install(isolated_home)
    code = f"""
import sys
from pathlib import Path
from askgpt.vision.images import load_image
from askgpt.vision.pipeline import ImagePipeline, OcrMode, VisionConfig
pipeline = ImagePipeline(VisionConfig(ocr=OcrMode.OFF), Path({str(isolated_home / "cache")!r}),
                         data_dir=Path({str(isolated_home / "data")!r}))
assert pipeline.encoder().name == "clip:tiny-clip"
blocks, _ = pipeline.encode([load_image({str(sample("coffee.png"))!r})], None)
print(",".join(m for m in ("torch", "open_clip", "torchvision") if m in sys.modules) or "none")
"""
    # Run outside the checkout: there the source folders, not the installed package, would import.
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"


# --- askgpt's tower and projector as an mmproj GGUF for llama.cpp (convert mmproj) --------------------------

@pytest.mark.model
def test_exported_mmproj_runs_the_tower_and_projector_in_llama_cpp(tiny: Tiny, real_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import gguf
    from scipy.special import erf

    from askgpt.convert.mmproj import export_mmproj

    report = export_mmproj(ClipSetupConfig("tiny-clip", checkpoint=tiny.checkpoint, model_config=tiny.config),
                           builtin_model_path(), lambda t: real_engine.tokenize(t, add_bos=False, special=False),
                           tmp_path / "mmproj-askgpt.gguf")
    assert report.n_patches == 16 and report.projection_dim == real_engine.info.n_embd
    vision = real_engine.open_vision(report.path, threads=2)
    pixels = (np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8)  # the tower's size: no resize
    (part,) = vision.segments(pixels)
    rows = part.rows
    # The reference: open_clip's own tower on askgpt's preprocessing, then the file's projector.
    visual = tiny.model.visual
    visual.output_tokens = True
    proj, visual.proj = visual.proj, None  # without it the pooled output is the class token itself
    try:
        with torch.no_grad():
            cls, tokens = visual(torch.from_numpy(preprocess(pixels, Preprocess((64, 64)))))
    finally:
        visual.proj = proj
    t = {x.name: np.array(x.data) for x in gguf.GGUFReader(str(report.path)).tensors}
    hidden = tokens[0].numpy() @ t["mm.0.weight"].T + t["mm.0.bias"]
    ref = (0.5 * hidden * (1 + erf(hidden / np.sqrt(2)))) @ t["mm.2.weight"].T + t["mm.2.bias"]
    cls_hidden = cls[0].numpy() @ t["mm.0.weight"].T + t["mm.0.bias"]
    cls_ref = (0.5 * cls_hidden * (1 + erf(cls_hidden / np.sqrt(2)))) @ t["mm.2.weight"].T + t["mm.2.bias"]
    # llama.cpp's graph drops the first patch and ends with the class token (see convert/mmproj.py):
    # every row it returns is compared, the class token's included.
    ref = np.concatenate([ref[1:], cls_ref[None]])
    assert rows.shape == (16, 576)
    assert np.abs(rows - ref).max() <= 1e-2 * np.abs(ref).max()
    cosines = (rows * ref).sum(1) / (np.linalg.norm(rows, axis=1) * np.linalg.norm(ref, axis=1))
    assert cosines.min() >= 0.999, cosines
    # The projector is the linear map it stands for: mm.2(GELU(mm.0 x)) == x A + b on the tokens.
    from askgpt.convert.mmproj import GELU_SHIFT

    assert (hidden > GELU_SHIFT - 4).all() and (hidden < GELU_SHIFT + 4).all()


@pytest.mark.model
def test_convert_mmproj_then_ask_with_it(tiny: Tiny, tmp_path: Path) -> None:
    out = tmp_path / "mmproj-tiny.gguf"
    made = run_askgpt(["convert", "mmproj", "tiny-clip", str(out), "--for", "smollm2", "--checkpoint",
                       str(tiny.checkpoint), "--model-config", str(tiny.config)], timeout=300)
    assert made.returncode == 0, made.stderr
    assert out.is_file() and b"llama-mtmd-cli" in made.stderr
    result = run_askgpt(["-t", "0", "-n", "12", "describe this", "-i", str(sample("chelsea.png")), "--mmproj",
                         str(out), "--stats"])
    assert result.returncode == 0, result.stderr
    assert b"16 embedding rows" in result.stderr


@pytest.mark.model
def test_a_gemma3_style_projector_gets_its_delimiters_and_two_way_attention(real_engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from askgpt.runtime.engine.base import EmbeddingRows, TokenIds
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare
    from askgpt.runtime.prompting.request import Request
    from askgpt.vision.pipeline import ImagePipeline, OcrMode, VisionConfig, target_model

    mmproj = write_mmproj(tmp_path / "mmproj-g3.gguf", 576, projector="gemma3")
    target = target_model(real_engine, builtin_model_path(), mmproj, threads=2)
    blocks, reports = ImagePipeline(VisionConfig(ocr=OcrMode.OFF), tmp_path).encode(
        [load_image(str(sample("coffee.png")))], target)
    opening, rows, closing = blocks[0].segments
    assert isinstance(opening, TokenIds) and isinstance(closing, TokenIds)
    detok = b"".join(real_engine.token_bytes(t) for t in opening.ids + closing.ids)
    assert detok == b"<start_of_image><end_of_image>"  # mtmd's own delimiters for this projector
    assert isinstance(rows, EmbeddingRows) and rows.rows.shape == (4, 576) and not rows.causal
    assert reports[0].rows == 4

    def next_token(block):  # type: ignore[no-untyped-def]
        prompt = prepare(real_engine, Request("What is in this picture?", images=(block,)), GenerationConfig(16))
        return np.exp(real_engine.next_token_logprobs(prompt.parts))

    two_way = next_token(blocks[0])
    one_way = next_token(replace(blocks[0], segments=(opening, replace(rows, causal=True), closing)))
    assert np.abs(two_way - one_way).sum() > 1e-4  # the attention switch reached llama.cpp
    result = run_askgpt(["-t", "0", "-n", "8", "describe", "-i", str(sample("coffee.png")), "--mmproj", str(mmproj)])
    assert result.returncode == 0, result.stderr


def test_setup_errors_name_the_way_out() -> None:
    unknown = run_askgpt(["vision", "setup", "ViT-Nope", "--random"])
    assert unknown.returncode == 2 and b"open_clip has no model 'ViT-Nope'" in unknown.stderr
    # Pretrained weights need the hub once; offline that is one line pointing at --checkpoint,
    # with none of open_clip's or huggingface_hub's own log lines.
    offline = run_askgpt(["vision", "setup", "ViT-B-32", "--pretrained", "laion2b_s34b_b79k"],
                         env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert offline.returncode == 1
    err = offline.stderr.decode()
    assert "cannot load the weights of ViT-B-32" in err and "--checkpoint FILE works offline" in err
    assert len(err.strip().splitlines()) == 1
