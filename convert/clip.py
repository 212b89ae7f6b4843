"""`askgpt vision setup` (also `askgpt convert clip`): an open_clip model to the ONNX files
askgpt answers with, once, so that answering never needs torch.

Writes, into a temporary folder renamed into place only when everything is there:
the image tower (pooled output and patch tokens) and the text tower as ONNX, their
dynamic int8 variants (onnxruntime.quantization), the shipped concept vocabulary's
CLIP text embeddings ("a photo of a {concept}")
with the image tower's projection matrix, and clip.json. ONNX-vs-PyTorch parity is
measured here and kept in clip.json; the int8 image tower is used only when its
pooled output kept cosine >= 0.99 to fp32's.

Needs the optional extra: pip install "askgpt[clip]" (torch, open-clip-torch).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from askgpt.convert.quantize import ConvertError
from askgpt.runtime.errors import UsageError
from askgpt.runtime.files import atomic_write_bytes, sha256_file
from askgpt.vision.clip import (
    ANY_CLIP,
    AUTO,
    BUILTIN,
    CONCEPT_PROMPT,
    CONCEPTS_FILE,
    META_FILE,
    ClipMeta,
    Preprocess,
    clip_root,
    concept_names,
)

INT8_MIN_COSINE = 0.99
TEXT_BATCH = 128
Progress = Callable[[str, int, int], None]  # (stage, done, total), as Messages.progress takes


@dataclass(frozen=True)
class ClipSetupConfig:
    model: str  # an open_clip model name, e.g. ViT-B-32
    pretrained: str | None = None  # an open_clip pretrained tag (downloads once)
    checkpoint: Path | None = None  # a local weights file
    random: bool = False  # random weights: exercises the pipeline, answers are meaningless
    model_config: Path | None = None  # an open_clip model config JSON (custom sizes); its stem names it
    name: str | None = None  # the encoder's folder name (--as); default: the model name
    # Also accept a checkpoint that is not safetensors (a pickle: loading one can run code).
    trust_pickle: bool = False
    int8: bool = True
    threads: int = max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ClipSetupReport:
    meta: ClipMeta
    folder: Path
    seconds: float


def preprocess_of(visual: Any) -> Preprocess:
    """An open_clip image tower's eval preprocessing (its preprocess_cfg), as askgpt's value."""
    cfg = visual.preprocess_cfg
    size = cfg["size"] if isinstance(cfg["size"], (tuple, list)) else (cfg["size"], cfg["size"])
    return Preprocess((int(size[0]), int(size[1])), str(cfg.get("resize_mode", "shortest")),
                      str(cfg.get("interpolation", "bicubic")), tuple(float(x) for x in cfg["mean"]),  # type: ignore[arg-type]
                      tuple(float(x) for x in cfg["std"]), int(cfg.get("fill_color", 0)))  # type: ignore[arg-type]


def embed_concepts(encode: Callable[[Any], np.ndarray], tokenizer: Any, names: list[str],
                   step: Callable[..., None]) -> np.ndarray:
    """(n_concepts, embed_dim) unit rows: "a photo of a {concept}" through the text tower."""
    step("embedding the concepts", 0, len(names))
    rows = []
    for start in range(0, len(names), TEXT_BATCH):
        rows.append(encode(tokenizer([CONCEPT_PROMPT.format(n) for n in names[start:start + TEXT_BATCH]])))
        step("embedding the concepts", min(len(names), start + TEXT_BATCH), len(names))
    embeddings = np.concatenate(rows).astype(np.float32)
    embeddings /= np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    return embeddings


def _source(config: ClipSetupConfig) -> str:
    chosen = [x for x in (config.pretrained, config.checkpoint, config.random or None) if x]
    if len(chosen) != 1:
        raise UsageError("give exactly one of --pretrained TAG, --checkpoint FILE or --random",
                         hint="e.g. askgpt vision setup ViT-B-32 --pretrained laion2b_s34b_b79k")
    if config.pretrained is not None and _names_a_file(config.pretrained):
        # open_clip loads a `pretrained` that is a file with torch.load: through here a
        # pickle would skip the safetensors check below.
        raise UsageError(f"--pretrained takes an open_clip tag, not a file: {config.pretrained}",
                         hint=f"give a weights file with --checkpoint {config.pretrained}")
    if config.checkpoint is not None:
        if not config.checkpoint.is_file():
            raise UsageError(f"checkpoint not found: {config.checkpoint}")
        if not config.trust_pickle and not is_safetensors(config.checkpoint):
            raise UsageError(f"{config.checkpoint.name} is not a safetensors file; other checkpoints (.pt, .bin: "
                             "pickles) can run code when loaded",
                             hint="convert it to safetensors, or pass --trust-pickle if you trust its source")
        return f"checkpoint:{sha256_file(config.checkpoint)}"
    return f"pretrained:{config.pretrained}" if config.pretrained else "random"


def _names_a_file(tag: str) -> bool:
    if tag.startswith("hf-hub:"):
        return False
    return Path(tag).expanduser().exists() or "/" in tag or Path(tag).suffix.lower() in (
        ".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".pkl")


def check_source(config: ClipSetupConfig) -> None:
    """Refuse a wrong weights source (none or two given, a missing file, a pickle without
    ``trust_pickle``) before anything slow (a model load) starts."""
    _source(config)


def is_safetensors(path: Path) -> bool:
    """Whether ``path`` holds safetensors, judged by its bytes (never its name): a
    little-endian u64 header length, then that many bytes of a JSON object, inside the file."""
    import json
    import struct

    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return False
            (size,) = struct.unpack("<Q", head)
            if size < 2 or size > min(100 << 20, path.stat().st_size - 8):
                return False
            header = json.loads(fh.read(size).decode("utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return False
    return isinstance(header, dict)


def import_open_clip() -> tuple[Any, Any]:
    try:
        import open_clip
        import torch
    except ImportError as exc:
        raise UsageError(f"setting up a CLIP encoder needs torch and open_clip ({exc.name} is missing)",
                         hint='pip install "askgpt[clip]"; answering afterwards needs neither') from exc
    return torch, open_clip


def create_model(open_clip: Any, config: ClipSetupConfig) -> tuple[str, Any]:
    model_name = config.model
    if config.model_config is not None:
        if not config.model_config.is_file():
            raise UsageError(f"model config not found: {config.model_config}")
        open_clip.add_model_config(str(config.model_config))
        model_name = config.model_config.stem
    if model_name not in open_clip.list_models():
        known = ", ".join([m for m in open_clip.list_models() if m.startswith("ViT-")][:8])
        raise UsageError(f"open_clip has no model {model_name!r}", hint=f"e.g. {known}, ...")
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="askgpt-clip-") as folder:
            weights = _weights_argument(config, Path(folder))
            model = open_clip.create_model(model_name, pretrained=weights, pretrained_text=False,
                                           require_pretrained=not config.random)
    except UsageError:
        raise
    except Exception as exc:  # downloads (offline), unreadable checkpoints, unknown tags
        raise ConvertError(f"cannot load the weights of {model_name}: {str(exc).splitlines()[0][:200]}",
                           hint="--pretrained downloads once and needs a connection; "
                                "--checkpoint FILE works offline") from exc
    return model_name, model.eval()


def _weights_argument(config: ClipSetupConfig, folder: Path) -> str | None:
    """What open_clip's ``pretrained`` gets. open_clip (>= 2.27) picks its loader by the
    name: safetensors for a name ending in .safetensors, else torch.load. A checkpoint
    that is safetensors by its bytes is handed over under such a name (a link in
    ``folder``), so no pickle loader ever reads it; others reach here only with
    ``trust_pickle`` (open_clip then loads them with weights_only=True)."""
    checkpoint = config.checkpoint
    if checkpoint is None:
        return config.pretrained
    if not is_safetensors(checkpoint):
        if not config.trust_pickle:  # _source refuses it first; checked again where it matters
            raise UsageError(f"{checkpoint.name} is not a safetensors file", hint="pass --trust-pickle")
        return str(checkpoint)
    if checkpoint.name.endswith(".safetensors"):
        return str(checkpoint)
    link = folder / "checkpoint.safetensors"
    link.symlink_to(checkpoint.resolve())
    return str(link)


def _visual_tower(torch: Any, visual: Any) -> Any:
    """The image tower as one module: pixel_values -> (pooled, patch tokens), or (pooled,)
    for towers without patch tokens (ResNets, timm towers)."""
    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.visual = visual
            self.tokens = hasattr(visual, "output_tokens")
            if self.tokens:
                visual.output_tokens = True

        def forward(self, x: Any) -> Any:
            out = self.visual(x)
            return out if self.tokens else (out,)

    return Tower().eval()


def _text_tower(torch: Any, model: Any) -> Any:
    """The text tower as one module: input_ids -> text_embeds (open_clip's encode_text)."""
    class Tower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, ids: Any) -> Any:
            return self.model.encode_text(ids)

    return Tower().eval()


def concept_encoder(torch: Any, open_clip: Any, model: Any) -> Callable[[Any], np.ndarray]:
    """Text embeddings of tokenized prompts, in torch. A causal CLIP text tower pooled at
    the end-of-text token reads no position after it, so the padding is cut off: the
    concept prompts are ~8 tokens of 77, and setup embeds ~7,000 of them (ViT-B-32: about
    a minute instead of 20). Other towers get the full ids. (The ONNX export cannot take
    a variable length: torch's attention bakes the traced length into its reshapes.)"""
    from open_clip.transformer import text_global_pool

    m = model
    trimmable = (isinstance(m, open_clip.model.CLIP) and getattr(m, "attn_mask", None) is not None
                 and getattr(m, "text_pool_type", "") in ("argmax", "eos"))

    def encode(ids: Any) -> np.ndarray:
        with torch.no_grad():
            if not trimmable:
                return m.encode_text(ids).float().numpy()
            used = torch.nonzero((ids != 0).any(dim=0)).flatten()
            n = int(used[-1]) + 1 if len(used) else ids.shape[1]
            ids = ids[:, :n]
            x = m.token_embedding(ids) + m.positional_embedding[:n]
            x = m.ln_final(m.transformer(x, attn_mask=m.attn_mask[:n, :n]))
            x = text_global_pool(x, ids, m.text_pool_type, eos_token_id=getattr(m, "text_eos_id", None))
            if m.text_projection is not None:
                x = m.text_projection(x) if isinstance(m.text_projection, torch.nn.Linear) else x @ m.text_projection
            return x.float().numpy()

    return encode


def _export(torch: Any, module: Any, example: Any, path: Path, inputs: list[str], outputs: list[str]) -> None:
    axes = {name: {0: "batch"} for name in inputs + outputs}
    # Not under no_grad: there torch's attention takes a fused fast path ONNX cannot express.
    try:
        torch.onnx.export(module, (example,), str(path), input_names=inputs, output_names=outputs,
                          opset_version=18, dynamo=False, dynamic_axes=axes)
    except Exception as exc:  # torch.onnx raises several unrelated types
        raise ConvertError(f"cannot export {path.stem} to ONNX: {str(exc).splitlines()[-1][:200]}") from exc


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    from askgpt.vision.encoder import session_options

    return ort.InferenceSession(str(path), sess_options=session_options(threads),
                                providers=["CPUExecutionProvider"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    num = (a * b).sum(axis=1)
    return float((num / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": sha256_file(path)}


def setup_clip(config: ClipSetupConfig, data_dir: Path, progress: Progress | None = None) -> ClipSetupReport:
    """Export, check and install one CLIP encoder; returns what was installed."""
    def step(stage: str, done: int, total: int = 1) -> None:
        if progress is not None:
            progress(stage, done, total)

    started = time.perf_counter()
    source = _source(config)
    name = config.name or (config.model_config.stem if config.model_config is not None else config.model)
    if not name or "/" in name or name.startswith(".") or name in (AUTO, BUILTIN, ANY_CLIP):
        raise UsageError(f"{name!r} cannot name an encoder", hint="pick another name with --as NAME")
    torch, open_clip = import_open_clip()
    step(f"loading {config.model}", 0)
    model_name, model = create_model(open_clip, config)
    step(f"loading {config.model}", 1)
    torch.set_num_threads(config.threads)
    prep = preprocess_of(model.visual)

    root = clip_root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    work = root / f".setup-{name}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    try:
        meta = _build(torch, open_clip, model, model_name, name, source, prep, config, work, step)
        _install(work, root / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ClipSetupReport(meta, root / name, time.perf_counter() - started)


def _build(torch: Any, open_clip: Any, model: Any, model_name: str, name: str, source: str, prep: Preprocess,
           config: ClipSetupConfig, work: Path, step: Callable[..., None]) -> ClipMeta:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    visual = _visual_tower(torch, model.visual)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(2, 3, *prep.size, generator=generator)
    step("exporting to ONNX", 0, 4)
    outputs = ["pooled", "tokens"] if visual.tokens else ["pooled"]
    _export(torch, visual, pixels[:1], work / "visual.onnx", ["pixel_values"], outputs)
    with torch.no_grad():
        reference = [t.numpy() for t in visual(pixels)]
    got = _session(work / "visual.onnx", config.threads).run(None, {"pixel_values": pixels.numpy()})
    parity = {f"{out}_max_abs_diff": float(np.abs(r - g).max()) for out, r, g in zip(outputs, reference, got,
                                                                                     strict=True)}

    tokenizer = open_clip.get_tokenizer(model_name)
    names = concept_names()
    ids = tokenizer([CONCEPT_PROMPT.format(n) for n in names[:8]])
    step("exporting to ONNX", 1, 4)
    text = _text_tower(torch, model)
    _export(torch, text, ids[:1], work / "text.onnx", ["input_ids"], ["text_embeds"])
    with torch.no_grad():
        text_ref = text(ids).numpy()
    text_got = _session(work / "text.onnx", config.threads).run(None, {"input_ids": ids.numpy()})[0]
    parity["text_max_abs_diff"] = float(np.abs(text_ref - text_got).max())
    encode_concepts = concept_encoder(torch, open_clip, model)
    parity["concepts_max_abs_diff"] = float(np.abs(encode_concepts(ids) - text_ref).max())

    use_int8 = False
    if config.int8:
        step("exporting to ONNX", 2, 4)
        for tower in ("visual", "text"):
            quantize_dynamic(str(work / f"{tower}.onnx"), str(work / f"{tower}.int8.onnx"),
                             weight_type=QuantType.QInt8)
        int8 = _session(work / "visual.int8.onnx", config.threads).run(None, {"pixel_values": pixels.numpy()})
        parity["int8_pooled_min_cosine"] = _cosine(int8[0], got[0])
        use_int8 = parity["int8_pooled_min_cosine"] >= INT8_MIN_COSINE

    step("exporting to ONNX", 4, 4)
    embeddings = embed_concepts(encode_concepts, tokenizer, names, step)
    proj = getattr(model.visual, "proj", None)
    proj_np = (proj.detach().float().numpy() if proj is not None and visual.tokens
               else np.zeros((0, embeddings.shape[1]), np.float32))
    np.savez(work / CONCEPTS_FILE, names=np.array(names), embeddings=embeddings, proj=proj_np)
    concepts_sha = hashlib.sha256((work / CONCEPTS_FILE).read_bytes()).hexdigest()

    files = {p.name: _file_entry(p) for p in sorted(work.glob("*.onnx"))}
    meta = ClipMeta(
        name=name, model=model_name, source=source, preprocess=prep, embed_dim=int(embeddings.shape[1]),
        token_width=int(reference[1].shape[-1]) if visual.tokens else 0,
        logit_scale=float(min(100.0, model.logit_scale.exp().item())), files=files, parity=parity,
        use_int8=use_int8, concepts_sha256=concepts_sha,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    atomic_write_bytes(work / META_FILE, meta.to_json().encode("utf-8"))
    return meta


def _install(work: Path, final: Path) -> None:
    """Swap the finished folder in: the old encoder (if any) is removed only after."""
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(old)
    try:
        work.rename(final)
    except OSError:
        if old.exists():
            old.rename(final)
        raise
    shutil.rmtree(old, ignore_errors=True)


def remove_encoder(data_dir: Path, name: str) -> Path:
    from askgpt.vision.clip import EncoderNotFoundError, encoder_folder

    folder = encoder_folder(data_dir, name)
    if folder is None:
        raise EncoderNotFoundError(f"no image encoder named {name!r}", hint="see `askgpt vision status`")
    shutil.rmtree(folder)
    return folder
