"""`askgpt convert types|hf|quantize|report|clip|mmproj`: parse, call askgpt.convert, print the summary."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from askgpt.cli.boundary import Commands, debug_enabled
from askgpt.cli.commands.vision import (
    CheckpointOpt,
    ClipModelArg,
    ModelConfigOpt,
    PretrainedOpt,
    RandomOpt,
    TrustPickleOpt,
    quiet_libraries,
    vision_setup,
)
from askgpt.cli.options import DebugLibrariesOpt, FiguresJsonOpt, ForceOpt, OutputGgufArg, QuietOpt, complete_models
from askgpt.cli.state import CliState, state
from askgpt.cli.terminal.render import Messages, print_result

if TYPE_CHECKING:
    from askgpt.convert.clip import ClipSetupConfig

app = Commands(help="Convert Hugging Face checkpoints to GGUF, quantize models, measure what "
                    "quantization cost, and export CLIP image encoders (ONNX, mmproj).")


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns


@contextmanager
def _done_once_in_place(output: Path, messages: Messages) -> Iterator[None]:
    """A Ctrl-C that lands after the new file was renamed into place (while it is read back
    and summarised) does not undo the work: the file is complete by construction, so the
    command says so and succeeds. Before the rename, it stops as usual with nothing new left."""
    from askgpt.runtime.files import remove_stale_temporaries

    before = _identity(output)
    try:
        yield
    except KeyboardInterrupt:
        if _identity(output) in (None, before):
            raise
        remove_stale_temporaries(output, include_own=True)  # a staging file whose cleanup was cut short
        messages.line(f"askgpt: interrupted after {output} was complete; it is kept")


@app.command("types")
def convert_types() -> None:
    """The output types, with bits per weight."""
    from askgpt.runtime.models.filetypes import OUTPUT_TYPES as TYPES

    print(f"{'type':8s} {'bits/weight':>11s}  note")
    for t in TYPES:
        print(f"{t.name:8s} {t.bits:11.2f}  {t.note}")


@app.command("hf")
def convert_hf(
    source: Annotated[str, typer.Argument(metavar="HF_FOLDER",
                                          help="A Hugging Face model folder: config.json, weights, tokenizer.")],
    output: OutputGgufArg,
    out_type: Annotated[str, typer.Option("--type", metavar="TYPE",
                                          help="F32, F16, BF16 or a quantized type such as Q4_K_M "
                                               "(see `askgpt convert types`).")] = "F16",
    trust_pickle: Annotated[bool, typer.Option(
        "--trust-pickle", help="Also read .bin/.pt weights (pickles; loaded with weights_only=True).")] = False,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Convert a Llama-family, Phi-3 or BERT (embedding) checkpoint (safetensors) to GGUF, quantizing if asked."""
    from askgpt.convert.hf.convert import convert_hf as convert
    from askgpt.runtime.engine.llama.tools import quantize_gguf
    from askgpt.runtime.models.filetypes import output_type

    messages = Messages(sys.stderr, quiet=quiet)
    chosen = output_type(out_type)
    threads = os.cpu_count() or 1
    with _done_once_in_place(Path(output).expanduser(), messages):
        with messages.progress() as progress:
            summary = convert(Path(source).expanduser(), Path(output), chosen,
                              lambda a, b, ftype: quantize_gguf(a, b, ftype, threads=threads),
                              trust_pickle=trust_pickle, force=force, progress=progress)
        for line in summary.lines():
            messages.line(line)


@app.command("quantize")
def convert_quantize(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="SOURCE.gguf", help="The GGUF to quantize.")],
    output: OutputGgufArg,
    out_type: Annotated[str, typer.Option("--type", metavar="TYPE",
                                          help="Output type, e.g. Q4_K_M (see `askgpt convert types`).")]
    = "Q4_K_M",
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Quantize a GGUF with llama.cpp's quantizer; the output appears only when complete and checked."""
    from askgpt.convert.quantize import quantize
    from askgpt.runtime.engine.llama.tools import quantize_gguf
    from askgpt.runtime.models.filetypes import output_type

    messages = Messages(sys.stderr, quiet=quiet)
    chosen = output_type(out_type)
    threads = os.cpu_count() or 1
    with _done_once_in_place(Path(output).expanduser(), messages):
        with messages.status(f"Quantizing to {chosen.name}…"):
            summary = quantize(Path(source).expanduser(), Path(output), chosen,
                               lambda a, b, ftype: quantize_gguf(a, b, ftype, threads=threads), force=force,
                               trial_cache=state(ctx).paths.cache_dir)
        for line in summary.lines():
            messages.line(line)


@app.command("report")
def convert_report(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL.gguf", help="The model to measure.")],
    reference: Annotated[str, typer.Option("--reference", metavar="REF.gguf",
                                           help="The model it was made from (e.g. the F16 or F32 file).")],
    text: Annotated[str | None, typer.Option("--text", metavar="FILE",
                                             help="Text to score on [default: askgpt's reference text].",
                                             show_default=False)] = None,
    ctx_size: Annotated[int, typer.Option("--ctx", min=16, metavar="N", help="Window size in tokens.")] = 512,
    as_json: FiguresJsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Perplexity, KL divergence and top-1 agreement of MODEL against its reference."""
    from askgpt.convert.report import check_same_vocabulary, compare, read_text
    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.tools import sequence_logprobs
    from askgpt.runtime.models.gguf import read_summary
    from askgpt.runtime.models.registry import ModelRef

    messages = Messages(sys.stderr, quiet=quiet)
    model_path, ref_path = Path(model).expanduser(), Path(reference).expanduser()
    read_summary(model_path)
    read_summary(ref_path)
    check_same_vocabulary(model_path, ref_path)
    content = read_text(text)
    config = EngineConfig(n_ctx=ctx_size, all_logits=True)
    engines = [state(ctx).engine_factory(ModelRef(p.stem, p), config) for p in (model_path, ref_path)]
    try:
        tokens = engines[1].tokenize(content, add_bos=engines[1].info.add_bos, special=False)
        with messages.progress() as progress:
            report = compare(
                tokens, lambda t: sequence_logprobs(engines[0], t), lambda t: sequence_logprobs(engines[1], t),
                window=engines[1].info.n_ctx, model_name=model_path.name, reference_name=ref_path.name,
                progress=lambda done, total: progress("scoring windows", done, total))
    finally:
        for engine in engines:
            engine.close()
    print_result(report.to_json(), "\n".join(report.lines()), as_json=as_json)


app.command("clip")(vision_setup)


@app.command("mmproj")
def convert_mmproj(
    ctx: typer.Context,
    model: ClipModelArg,
    output: Annotated[str, typer.Argument(metavar="OUTPUT.gguf", help="Where to write the mmproj file.")],
    for_model: Annotated[str, typer.Option(
        "--for", metavar="NAME|PATH", help="The language model the projector is fitted to.",
        autocompletion=complete_models)],
    pretrained: PretrainedOpt = None,
    checkpoint: CheckpointOpt = None,
    trust_pickle: TrustPickleOpt = False,
    random: RandomOpt = False,
    model_config: ModelConfigOpt = None,
    quiet: QuietOpt = False,
    debug: DebugLibrariesOpt = False,
) -> None:
    """A CLIP image tower and askgpt's projector, fitted to --for's token embeddings, as an
    mmproj GGUF that llama.cpp's own tools (and --mmproj) load."""
    from askgpt.convert.clip import ClipSetupConfig

    source = ClipSetupConfig(model, pretrained=pretrained, random=random, trust_pickle=trust_pickle,
                             checkpoint=Path(checkpoint).expanduser() if checkpoint else None,
                             model_config=Path(model_config).expanduser() if model_config else None)
    export_mmproj(source, for_model, output, run=state(ctx), messages=Messages(sys.stderr, quiet=quiet),
                  debug=debug_enabled(debug))


def export_mmproj(source: ClipSetupConfig, model: str, output: str, *, run: CliState, messages: Messages,
                  debug: bool) -> None:
    """CLIP tower + askgpt's projector for MODEL -> an mmproj GGUF llama.cpp loads."""
    from askgpt.convert.clip import check_source
    from askgpt.convert.mmproj import export_mmproj as export
    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.kinds import is_local
    from askgpt.runtime.errors import UsageError
    from askgpt.runtime.store.settings import model_ref

    check_source(source)  # a refused checkpoint is said before the model loads
    ref = model_ref(run.settings, model)
    if not is_local(ref):
        raise UsageError("the projector is fitted to a local model's token embeddings; name a GGUF file")
    with messages.status(f"Loading {ref.name}…"):
        engine = run.engine_factory(ref, EngineConfig(n_ctx=256))  # only its tokenizer is needed
    destination = Path(output).expanduser()
    with _done_once_in_place(destination, messages):
        try:
            with quiet_libraries(debug), messages.progress() as progress:
                report = export(source, ref.path, lambda text: engine.tokenize(text, add_bos=False, special=False),
                                destination, progress=progress)
        finally:
            engine.close()
        messages.line(f"wrote {report.path} ({report.model} -> {ref.name}: {report.n_patches - 1} patch rows and "
                      f"the class token per image, width {report.projection_dim}) in {report.seconds:.1f}s")
        messages.line(f"use it with: askgpt -m {ref.name} --mmproj {report.path} -i IMAGE \"...\", or llama.cpp's "
                      f"llama-mtmd-cli -m {ref.path.name} --mmproj {report.path.name}")
