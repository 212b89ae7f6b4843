"""`askgpt vision setup|status|rm`: set up, list and remove CLIP image encoders.
`vision setup` is also `askgpt convert clip`."""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from askgpt.cli.boundary import Commands, debug_enabled
from askgpt.cli.options import DebugLibrariesOpt, JsonOpt, QuietOpt
from askgpt.cli.state import state
from askgpt.cli.terminal.render import Messages
from askgpt.runtime.store.settings import Paths

app = Commands(help="Image encoders: set up CLIP models for --image (once, with the clip extra), list them, "
                    "remove them.")

# The CLIP weights' source, shared by `vision setup` (= `convert clip`) and `convert mmproj`.
ClipModelArg = Annotated[str, typer.Argument(metavar="MODEL", help="An open_clip model name, e.g. ViT-B-32.")]
PretrainedOpt = Annotated[str | None, typer.Option(
    "--pretrained", metavar="TAG", help="open_clip's pretrained weights, e.g. laion2b_s34b_b79k "
                                        "(downloads once; needs a connection).", show_default=False)]
CheckpointOpt = Annotated[str | None, typer.Option(
    "--checkpoint", metavar="FILE", help="Weights from a local file (offline): safetensors, unless "
                                         "--trust-pickle.", show_default=False)]
TrustPickleOpt = Annotated[bool, typer.Option(
    "--trust-pickle", help="Also accept a --checkpoint that is not safetensors (a pickle: loading one can run "
                           "code; only for files you trust).")]
RandomOpt = Annotated[bool, typer.Option(
    "--random", help="Random weights: exercises the whole pipeline; answers are meaningless.")]
ModelConfigOpt = Annotated[str | None, typer.Option(
    "--model-config", metavar="FILE", help="An open_clip model config JSON (custom sizes); its file "
                                           "name is the model's name.", show_default=False)]


@app.command("setup")
def vision_setup(
    ctx: typer.Context,
    model: ClipModelArg,
    pretrained: PretrainedOpt = None,
    checkpoint: CheckpointOpt = None,
    trust_pickle: TrustPickleOpt = False,
    random: RandomOpt = False,
    model_config: ModelConfigOpt = None,
    name: Annotated[str | None, typer.Option(
        "--as", metavar="NAME", help="The encoder's name for --encoder [default: the model name].",
        show_default=False)] = None,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also make the int8 variants.")] = True,
    quiet: QuietOpt = False,
    debug: DebugLibrariesOpt = False,
) -> None:
    """Export an open_clip model's image and text towers to ONNX (with int8 variants and a parity
    check) into askgpt's data folder; --image uses it from then on, without torch."""
    from pathlib import Path

    from askgpt.convert.clip import ClipSetupConfig, setup_clip

    messages = Messages(sys.stderr, quiet=quiet)
    config = ClipSetupConfig(
        model=model, pretrained=pretrained, checkpoint=Path(checkpoint).expanduser() if checkpoint else None,
        random=random, model_config=Path(model_config).expanduser() if model_config else None, name=name,
        int8=int8, threads=os.cpu_count() or 1, trust_pickle=trust_pickle)
    data_dir = state(ctx).settings.paths.data_dir
    with quiet_libraries(debug_enabled(debug)), messages.progress() as progress:
        report = setup_clip(config, data_dir, progress=progress)
    meta = report.meta
    messages.line(f"set up {meta.name} ({meta.model}, {meta.source}) in {report.seconds:.1f}s -> {report.folder}")
    for line in _parity_lines(meta.parity, meta.use_int8):
        messages.line(line)
    if meta.random:
        messages.warn("random weights: images go through the whole pipeline, but what it reports is meaningless")


@app.command("status")
def vision_status(
    ctx: typer.Context,
    as_json: JsonOpt = False,
    verify: Annotated[bool, typer.Option("--verify", help="Recompute every file's SHA-256.")] = False,
) -> None:
    """The image encoders: sizes, hashes, parity, which tower is used, projector fits."""
    entries = encoder_entries(state(ctx).settings.paths, verify=verify)
    if as_json:
        typer.echo(json.dumps({"encoders": entries, "builtin": "mobilenet_v2 (ImageNet) + PP-OCR"}, indent=2))
        return
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
    typer.echo("\n".join(lines))


@app.command("rm")
def vision_rm(ctx: typer.Context,
              name: Annotated[str, typer.Argument(metavar="NAME", help="A set-up encoder's name.")]) -> None:
    """Remove a set-up CLIP encoder (its folder in the data folder)."""
    from askgpt.convert.clip import remove_encoder

    typer.echo(f"removed {remove_encoder(state(ctx).settings.paths.data_dir, name)}")


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


def _parity_lines(parity: dict[str, float], use_int8: bool) -> list[str]:
    lines = ["ONNX vs PyTorch, max abs diff: " + ", ".join(
        f"{k.removesuffix('_max_abs_diff')} {v:.2e}" for k, v in parity.items() if k.endswith("_max_abs_diff"))]
    if "int8_pooled_min_cosine" in parity:
        verdict = "used" if use_int8 else "not used (below 0.99)"
        lines.append(f"int8 image tower: cosine to fp32 {parity['int8_pooled_min_cosine']:.4f}, {verdict}")
    return lines


def encoder_entries(paths: Paths, *, verify: bool) -> list[dict[str, object]]:
    """What `vision status` reports of each set-up encoder, checked against its metadata."""
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
            found = "ok" if path.is_file() and path.stat().st_size == entry["bytes"] else "missing or wrong size"
            if verify and found == "ok" and sha256_file(path) != entry["sha256"]:
                found = "hash mismatch"
            files[file] = {"bytes": entry["bytes"], "sha256": entry["sha256"], "state": found}
        fits = sorted(p.name for p in (paths.cache_dir / "vision").glob(f"projector-{meta.identity[:12]}-*.npz"))
        entries.append({
            "name": meta.name, "model": meta.model, "source": meta.source, "random": meta.random,
            "image_size": list(meta.preprocess.size), "embed_dim": meta.embed_dim,
            "image_tower": "visual.int8.onnx" if meta.use_int8 else "visual.onnx", "parity": meta.parity,
            "files": files, "projector_fits": fits, "trained_projector": (folder / TRAINED_FILE).is_file(),
            "created": meta.created, "metadata": str(folder / META_FILE)})
    return entries
