"""The `vision` commands' glue: set up, list and remove CLIP image encoders."""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from askgpt.cli.render import Messages
from askgpt.runtime.store.settings import Paths


@contextmanager
def quiet_libraries(debug: bool) -> Iterator[None]:
    """torch's exporter, open_clip and onnxruntime's quantizer log and warn freely; stderr
    is for askgpt's own lines unless --debug asks for theirs."""
    if debug:
        yield
        return
    # open_clip logs through the root logger, huggingface_hub through its own handler:
    # switch logging off for the duration rather than chase each logger.
    logging.disable(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(logging.NOTSET)


def run_setup(model: str, *, pretrained: str | None, checkpoint: str | None, random: bool,
              model_config: str | None, name: str | None, int8: bool, paths: Paths, messages: Messages,
              debug: bool, trust_pickle: bool = False) -> None:
    from askgpt.convert.clip import ClipSetupConfig, setup_clip

    config = ClipSetupConfig(
        model=model, pretrained=pretrained, checkpoint=Path(checkpoint).expanduser() if checkpoint else None,
        random=random, model_config=Path(model_config).expanduser() if model_config else None, name=name,
        int8=int8, threads=os.cpu_count() or 1, trust_pickle=trust_pickle)
    with quiet_libraries(debug), messages.progress() as progress:
        report = setup_clip(config, paths.data_dir, progress=progress)
    meta = report.meta
    messages.line(f"set up {meta.name} ({meta.model}, {meta.source}) in {report.seconds:.1f}s -> {report.folder}")
    for line in _parity_lines(meta.parity, meta.use_int8):
        messages.line(line)
    if meta.random:
        messages.warn("random weights: images go through the whole pipeline, but what it reports is meaningless")


def _parity_lines(parity: dict[str, float], use_int8: bool) -> list[str]:
    lines = ["ONNX vs PyTorch, max abs diff: " + ", ".join(
        f"{k.removesuffix('_max_abs_diff')} {v:.2e}" for k, v in parity.items() if k.endswith("_max_abs_diff"))]
    if "int8_pooled_min_cosine" in parity:
        verdict = "used" if use_int8 else "not used (below 0.99)"
        lines.append(f"int8 image tower: cosine to fp32 {parity['int8_pooled_min_cosine']:.4f}, {verdict}")
    return lines


def run_status(paths: Paths, *, as_json: bool, verify: bool) -> str:
    from askgpt.runtime.errors import AskgptError
    from askgpt.runtime.files import sha256_file
    from askgpt.vision.clip import META_FILE, encoder_folders, read_meta
    from askgpt.vision.projector import TRAINED_FILE

    entries: list[dict[str, object]] = []
    for folder in encoder_folders(paths.data_dir):
        try:
            meta = read_meta(folder)
        except AskgptError as exc:
            entries.append({"name": folder.name, "error": exc.message})
            continue
        files = {}
        for file, entry in meta.files.items():
            path = folder / file
            state = "ok" if path.is_file() and path.stat().st_size == entry["bytes"] else "missing or wrong size"
            if verify and state == "ok" and sha256_file(path) != entry["sha256"]:
                state = "hash mismatch"
            files[file] = {"bytes": entry["bytes"], "sha256": entry["sha256"], "state": state}
        fits = sorted(p.name for p in (paths.cache_dir / "vision").glob(f"projector-{meta.identity[:12]}-*.npz"))
        entries.append({
            "name": meta.name, "model": meta.model, "source": meta.source, "random": meta.random,
            "image_size": list(meta.preprocess.size), "embed_dim": meta.embed_dim,
            "image_tower": "visual.int8.onnx" if meta.use_int8 else "visual.onnx", "parity": meta.parity,
            "files": files, "projector_fits": fits, "trained_projector": (folder / TRAINED_FILE).is_file(),
            "created": meta.created, "metadata": str(folder / META_FILE)})
    if as_json:
        return json.dumps({"encoders": entries, "builtin": "mobilenet_v2 (ImageNet) + PP-OCR"}, indent=2)
    lines = ["builtin: MobileNetV2 (ImageNet classes) and PP-OCR, always available"]
    if not entries:
        lines.append("no CLIP encoder set up (askgpt vision setup MODEL --pretrained TAG | --checkpoint FILE)")
    for e in entries:
        if "error" in e:
            lines.append(f"{e['name']}: damaged: {e['error']}")
            continue
        flag = "  [random weights: meaningless]" if e["random"] else ""
        lines.append(f"{e['name']}: {e['model']} ({e['source']}), {e['image_size'][0]}px, "  # type: ignore[index]
                     f"uses {e['image_tower']}{flag}")
        for file, f in e["files"].items():  # type: ignore[attr-defined]
            lines.append(f"  {file:18s} {f['bytes'] / 1e6:8.1f} MB  sha256 {f['sha256'][:16]}  {f['state']}")
        lines.extend("  " + line for line in _parity_lines(e["parity"], e["image_tower"] == "visual.int8.onnx"))  # type: ignore[arg-type]
        n_fits = len(e["projector_fits"])  # type: ignore[arg-type]
        lines.append(f"  projector fits (one per language model): {n_fits or 'none yet'}"
                     + ("; trained projector.npz present" if e["trained_projector"] else ""))
    return "\n".join(lines)


def run_rm(name: str, paths: Paths) -> str:
    from askgpt.convert.clip import remove_encoder

    return f"removed {remove_encoder(paths.data_dir, name)}"
