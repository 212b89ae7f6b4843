"""CLIP image encoders on ONNX Runtime: what `askgpt vision setup` made, read back and run.

A set-up encoder is a folder under ``<data>/vision/clip/NAME`` (convert/clip.py writes
it atomically): the image tower as ONNX (fp32, and int8 when it kept cosine >= 0.99 to
fp32 at setup), the text tower as ONNX, ``concepts.npz`` (CLIP text embeddings of
"a photo of a {concept}" for every concept of the shipped vocabulary, and the image
tower's final projection) and ``clip.json`` (everything needed to preprocess exactly
as open_clip does, and the files' sizes and hashes). Answering needs numpy, Pillow and
onnxruntime only: never torch or open_clip.

An image becomes: zero-shot tags (its top concepts with softmax scores), the pooled
image embedding and a 2x2 grid of pooled patch embeddings (for the projector).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.runtime.errors import AskgptError, ExitCode, ImageError
from askgpt.vision.encoder import ImageFeatures, Label, session_options
from askgpt.vision.images import LoadedImage

META_FILE = "clip.json"
CONCEPTS_FILE = "concepts.npz"
FORMAT_VERSION = 1
CONCEPT_PROMPT = "a photo of a {}"
# Zero-shot tags below this share of the softmax over ~7,000 concepts say nothing.
MIN_TAG_SCORE = 0.02
REGION_GRID = 2  # pooled patch embeddings: a 2x2 grid of image regions
BUILTIN = "builtin"
AUTO = "auto"
ANY_CLIP = "clip"


class EncoderNotFoundError(AskgptError):
    """An encoder was asked for by name but is not set up."""

    exit_code = ExitCode.NOT_FOUND


def clip_root(data_dir: Path) -> Path:
    return data_dir / "vision" / "clip"


def concept_names() -> list[str]:
    """The shipped zero-shot vocabulary (vision/data/concepts.txt, made by make_concepts.py)."""
    return (Path(__file__).parent / "data" / "concepts.txt").read_text(encoding="utf-8").split("\n")[:-1]


@dataclass(frozen=True)
class Preprocess:
    """open_clip's eval transform for one model, as data (its PreprocessCfg)."""

    size: tuple[int, int]  # (height, width)
    resize_mode: str = "shortest"  # shortest | longest | squash
    interpolation: str = "bicubic"  # bicubic | bilinear
    mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    fill: int = 0  # padding colour of resize_mode "longest"


@dataclass(frozen=True)
class ClipMeta:
    name: str  # the folder's name: what --encoder takes
    model: str  # the open_clip model name
    source: str  # "pretrained:TAG", "checkpoint:SHA256" or "random"
    preprocess: Preprocess
    embed_dim: int
    token_width: int  # 0 when the tower gives no patch tokens
    logit_scale: float
    files: dict[str, dict[str, Any]]  # file name -> {"bytes": n, "sha256": hex}
    parity: dict[str, float]
    use_int8: bool
    concepts_sha256: str
    created: str

    @property
    def random(self) -> bool:
        return self.source == "random"

    @property
    def identity(self) -> str:
        """What a projector fit depends on: the image tower and the concept embeddings."""
        return f"clip-{self.files['visual.onnx']['sha256'][:16]}-{self.concepts_sha256[:16]}"

    def to_json(self) -> str:
        data = {"format": FORMAT_VERSION, "name": self.name, "model": self.model, "source": self.source,
                "preprocess": {"size": list(self.preprocess.size), "resize_mode": self.preprocess.resize_mode,
                               "interpolation": self.preprocess.interpolation, "mean": list(self.preprocess.mean),
                               "std": list(self.preprocess.std), "fill": self.preprocess.fill},
                "embed_dim": self.embed_dim, "token_width": self.token_width, "logit_scale": self.logit_scale,
                "files": self.files, "parity": self.parity, "use_int8": self.use_int8,
                "concepts_sha256": self.concepts_sha256, "created": self.created}
        return json.dumps(data, indent=2) + "\n"


def read_meta(folder: Path) -> ClipMeta:
    path = folder / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {data.get('format')!r}, this askgpt reads {FORMAT_VERSION}")
        p = data["preprocess"]
        h, w = (int(x) for x in p["size"])
        return ClipMeta(
            name=folder.name, model=str(data["model"]), source=str(data["source"]),
            preprocess=Preprocess((h, w), str(p["resize_mode"]), str(p["interpolation"]),
                                  tuple(float(x) for x in p["mean"]),  # type: ignore[arg-type]
                                  tuple(float(x) for x in p["std"]), int(p.get("fill", 0))),  # type: ignore[arg-type]
            embed_dim=int(data["embed_dim"]), token_width=int(data["token_width"]),
            logit_scale=float(data["logit_scale"]), files=dict(data["files"]), parity=dict(data["parity"]),
            use_int8=bool(data["use_int8"]), concepts_sha256=str(data["concepts_sha256"]),
            created=str(data["created"]))
    except FileNotFoundError as exc:
        raise EncoderNotFoundError(f"{folder.name} is not a set-up encoder (no {META_FILE})",
                                   hint=f"run `askgpt vision setup MODEL --as {folder.name}`") from exc
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"the CLIP encoder {folder.name} has a damaged {META_FILE}: {exc}",
                         hint="set it up again with `askgpt vision setup`") from exc


def encoder_folders(data_dir: Path) -> list[Path]:
    """The encoders' folders, by name (not the hidden ones a setup in progress works in)."""
    root = clip_root(data_dir)
    if not root.is_dir():
        return []
    return sorted(f for f in root.iterdir() if f.is_dir() and not f.name.startswith("."))


def encoder_folder(data_dir: Path, name: str) -> Path | None:
    """The folder of the encoder called ``name``; None when there is none (or the name
    could reach outside the encoders' folder)."""
    folder = clip_root(data_dir) / name
    return None if "/" in name or name.startswith(".") or not folder.is_dir() else folder


def set_up_encoders(data_dir: Path) -> list[ClipMeta]:
    """Every readable set-up encoder, newest first."""
    found = []
    for folder in encoder_folders(data_dir):
        if (folder / META_FILE).is_file():
            try:
                found.append(read_meta(folder))
            except AskgptError:
                continue  # `vision status` reports it; choosing skips it
    return sorted(found, key=lambda m: m.created, reverse=True)


def choose_encoder(data_dir: Path, wanted: str) -> ClipMeta | None:
    """``auto``: the newest CLIP encoder, else None (the built-in one); ``builtin``: None;
    ``clip``: the newest, which must exist; any other name: that encoder."""
    wanted = wanted.strip()
    if wanted == BUILTIN:
        return None
    if wanted in (AUTO, ANY_CLIP):
        encoders = set_up_encoders(data_dir)
        if encoders:
            return encoders[0]
        if wanted == AUTO:
            return None
        raise EncoderNotFoundError(
            "no CLIP encoder is set up",
            hint="run `askgpt vision setup ViT-B-32 --pretrained laion2b_s34b_b79k` (online once), "
                 "or `--checkpoint FILE`")
    folder = encoder_folder(data_dir, wanted)
    if folder is None:
        names = ", ".join(m.name for m in set_up_encoders(data_dir)) or "none"
        raise EncoderNotFoundError(f"no image encoder named {wanted!r} (set up: {names}; built in: {BUILTIN})",
                                   hint=f"run `askgpt vision setup MODEL --as {wanted}`")
    return read_meta(folder)


def preprocess(pixels: np.ndarray, cfg: Preprocess) -> np.ndarray:
    """(1, 3, H, W) float32, equal to open_clip's eval transform of the same RGB image
    (torchvision's Resize/CenterCrop on a PIL image are Pillow's resize and a crop)."""
    from PIL import Image

    img = Image.fromarray(pixels, "RGB")
    resample = Image.Resampling.BILINEAR if cfg.interpolation == "bilinear" else Image.Resampling.BICUBIC
    th, tw = cfg.size
    w, h = img.size
    if cfg.resize_mode == "squash":
        img = img.resize((tw, th), resample)
    elif cfg.resize_mode == "longest":
        ratio = max(h / th, w / tw)
        # max(1, ...): a 1-pixel-wide sliver would round to 0 (where open_clip itself fails)
        size = (max(1, round(w / ratio)), max(1, round(h / ratio)))
        img = _pad_crop(img.resize(size, resample), th, tw, cfg.fill)
    else:  # shortest
        if th == tw:
            # torchvision: the short side becomes `size`, the long one int(size * long / short)
            if w <= h:
                new = (th, int(th * h / w))
            else:
                new = (int(th * w / h), th)
            if new != (w, h):
                img = img.resize(new, resample)
        else:  # open_clip's ResizeKeepRatio for non-square sizes (always bicubic)
            ratio = min(h / th, w / tw)
            img = img.resize((round(w / ratio), round(h / ratio)), Image.Resampling.BICUBIC)
        img = _pad_crop(img, th, tw, 0)
    # As ToTensor then Normalize: float32 /255, then (x - mean) / std, in float32.
    unit = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    normalized = (unit - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(normalized.transpose(2, 0, 1)[None], dtype=np.float32)


def _pad_crop(img: Any, th: int, tw: int, fill: int) -> Any:
    """torchvision's center crop, padding first where the image is smaller (CenterCropOrPad)."""
    from PIL import Image

    w, h = img.size
    if tw > w or th > h:
        left, top = (tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0
        right, bottom = (tw - w + 1) // 2 if tw > w else 0, (th - h + 1) // 2 if th > h else 0
        canvas = Image.new("RGB", (w + left + right, h + top + bottom), (fill, fill, fill))
        canvas.paste(img, (left, top))
        img, (w, h) = canvas, canvas.size
        if (w, h) == (tw, th):
            return img
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return img.crop((left, top, left + tw, top + th))


def _normalized(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def region_embeddings(tokens: np.ndarray, proj: np.ndarray, grid: int = REGION_GRID) -> np.ndarray:
    """(grid*grid, embed_dim): the patch tokens (n, width) of a square patch grid mean-pooled
    over ``grid x grid`` regions, then through the tower's own projection, normalized."""
    side = int(round(np.sqrt(len(tokens))))
    if side * side != len(tokens) or side < grid:
        return np.zeros((0, proj.shape[1]), np.float32)
    cells = tokens.reshape(side, side, -1)
    edges = np.linspace(0, side, grid + 1).round().astype(int)
    pooled = [cells[edges[i]:edges[i + 1], edges[j]:edges[j + 1]].mean(axis=(0, 1))
              for i in range(grid) for j in range(grid)]
    return _normalized(np.stack(pooled) @ proj)


@dataclass(frozen=True, eq=False)
class ConceptTable:
    names: tuple[str, ...]
    embeddings: np.ndarray  # (n_concepts, embed_dim), unit rows
    proj: np.ndarray  # (token_width, embed_dim); (0, embed_dim) when there are no tokens


def load_concepts(folder: Path) -> ConceptTable:
    try:
        with np.load(folder / CONCEPTS_FILE, allow_pickle=False) as data:
            names = tuple(str(n) for n in data["names"])
            return ConceptTable(names, data["embeddings"].astype(np.float32), data["proj"].astype(np.float32))
    except (OSError, KeyError, ValueError) as exc:
        raise ImageError(f"the CLIP encoder {folder.name} has a damaged {CONCEPTS_FILE}: {exc}",
                         hint="set it up again with `askgpt vision setup`") from exc


class ClipEncoder:
    """The image tower of a set-up CLIP model, on ONNX Runtime."""

    def __init__(self, folder: Path, *, threads: int, top_k: int = 5, int8: bool | None = None) -> None:
        import onnxruntime as ort

        self.meta = read_meta(folder)
        self.folder = folder
        self._top_k = top_k
        use_int8 = self.meta.use_int8 if int8 is None else int8
        self.model_file = "visual.int8.onnx" if use_int8 and "visual.int8.onnx" in self.meta.files else "visual.onnx"
        path = folder / self.model_file
        expected = self.meta.files.get(self.model_file, {}).get("bytes")
        hint = f"set it up again: askgpt vision setup {self.meta.model} --as {self.meta.name}"
        if not path.is_file() or (expected is not None and path.stat().st_size != expected):
            raise ImageError(f"the CLIP encoder {self.meta.name} is incomplete: {self.model_file} is missing "
                             "or has the wrong size", hint=hint)
        try:
            self._session = ort.InferenceSession(str(path), sess_options=session_options(threads),
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise ImageError(f"the CLIP encoder {self.meta.name}'s {self.model_file} is damaged: "
                             f"{str(exc).splitlines()[0][:160]}", hint=hint) from exc
        self._outputs = [o.name for o in self._session.get_outputs()]
        self.concepts = load_concepts(folder)

    @property
    def name(self) -> str:
        return f"clip:{self.meta.name}"

    def embed(self, image: LoadedImage) -> tuple[np.ndarray, np.ndarray | None]:
        """The pooled embedding (embed_dim,) and the patch tokens (n, width) or None."""
        out = self._session.run(None, {"pixel_values": preprocess(image.pixels, self.meta.preprocess)})
        named = dict(zip(self._outputs, out, strict=True))
        tokens = named.get("tokens")
        return named["pooled"][0], (tokens[0] if tokens is not None else None)

    def encode(self, image: LoadedImage) -> ImageFeatures:
        started = time.perf_counter()
        pooled, tokens = self.embed(image)
        unit = _normalized(pooled)
        logits = self.meta.logit_scale * (self.concepts.embeddings @ unit)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        top = np.argsort(-probs)[: self._top_k]
        labels = tuple(Label(self.concepts.names[i], float(probs[i])) for i in top)
        regions = (region_embeddings(tokens, self.concepts.proj)
                   if tokens is not None and self.concepts.proj.size else None)
        return ImageFeatures(self.name, labels=labels, pooled=unit, class_ids=tuple(int(i) for i in top),
                             regions=regions, seconds=time.perf_counter() - started)
