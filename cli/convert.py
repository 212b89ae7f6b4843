"""The `convert` commands' glue: parse, call askgpt.convert, print the summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from askgpt.cli.render import Messages, print_result
from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.errors import UsageError
from askgpt.runtime.models.registry import ModelRef
from askgpt.runtime.store.settings import Settings

if TYPE_CHECKING:
    from askgpt.convert.clip import ClipSetupConfig


def run_types() -> None:
    from askgpt.convert.types import TYPES

    print(f"{'type':8s} {'bits/weight':>11s}  note")
    for t in TYPES:
        print(f"{t.name:8s} {t.bits:11.2f}  {t.note}")


def run_quantize(src: str, dst: str, type_name: str, *, force: bool, messages: Messages,
                 trial_cache: Path | None = None) -> None:
    from askgpt.convert.quantize import quantize
    from askgpt.convert.types import output_type
    from askgpt.runtime.engine.llama.engine import quantize_gguf

    out_type = output_type(type_name)
    threads = os.cpu_count() or 1
    with messages.status(f"Quantizing to {out_type.name}…"):
        summary = quantize(Path(src).expanduser(), Path(dst), out_type,
                           lambda a, b, ftype: quantize_gguf(a, b, ftype, threads=threads), force=force,
                           trial_cache=trial_cache)
    for line in summary.lines():
        messages.line(line)


def run_hf(src: str, dst: str, type_name: str, *, trust_pickle: bool, force: bool, messages: Messages) -> None:
    from askgpt.convert.hf import convert_hf
    from askgpt.convert.types import output_type
    from askgpt.runtime.engine.llama.engine import quantize_gguf

    out_type = output_type(type_name)
    threads = os.cpu_count() or 1
    with messages.progress() as progress:
        summary = convert_hf(Path(src).expanduser(), Path(dst), out_type,
                             lambda a, b, ftype: quantize_gguf(a, b, ftype, threads=threads),
                             trust_pickle=trust_pickle, force=force, progress=progress)
    for line in summary.lines():
        messages.line(line)


def run_report(model: str, reference: str, *, text: str | None, ctx: int, as_json: bool,
               engine_factory: EngineFactory, messages: Messages) -> None:
    from askgpt.convert.gguf_file import read_summary
    from askgpt.convert.report import check_same_vocabulary, compare, read_text
    from askgpt.runtime.engine.llama.engine import sequence_logprobs

    model_path, ref_path = Path(model).expanduser(), Path(reference).expanduser()
    read_summary(model_path)
    read_summary(ref_path)
    check_same_vocabulary(model_path, ref_path)
    content = read_text(text)
    config = EngineConfig(n_ctx=ctx, all_logits=True)
    engines = [engine_factory(ModelRef(p.stem, p), config) for p in (model_path, ref_path)]
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


def run_mmproj(source: ClipSetupConfig, model: str, output: str, *, settings: Settings,
               engine_factory: EngineFactory, messages: Messages, debug: bool) -> None:
    """CLIP tower + askgpt's projector for MODEL -> an mmproj GGUF llama.cpp loads."""
    from askgpt.cli.vision import quiet_libraries
    from askgpt.convert.clip import check_source
    from askgpt.convert.mmproj import export_mmproj
    from askgpt.runtime.store.settings import model_ref

    check_source(source)  # a refused checkpoint is said before the model loads
    ref = model_ref(settings, model)
    if ref.endpoint is not None:
        raise UsageError("the projector is fitted to a local model's token embeddings; name a GGUF file")
    with messages.status(f"Loading {ref.name}…"):
        engine = engine_factory(ref, EngineConfig(n_ctx=256))  # only its tokenizer is needed
    try:
        with quiet_libraries(debug), messages.progress() as progress:
            report = export_mmproj(source, ref.path, lambda text: engine.tokenize(text, add_bos=False, special=False),
                                   Path(output).expanduser(), progress=progress)
    finally:
        engine.close()
    messages.line(f"wrote {report.path} ({report.model} -> {ref.name}: {report.n_patches - 1} patch rows and the "
                  f"class token per image, width {report.projection_dim}) in {report.seconds:.1f}s")
    messages.line(f"use it with: askgpt -m {ref.name} --mmproj {report.path} -i IMAGE \"...\", or llama.cpp's "
                  f"llama-mtmd-cli -m {ref.path.name} --mmproj {report.path.name}")
