"""`askgpt ask` (the default command): its options; cli/ask.py runs it."""

from __future__ import annotations

import io
import sys
from typing import Annotated

import typer

from askgpt.cli.boundary import debug_enabled
from askgpt.cli.options import (
    BatchOpt,
    CalibrateOpt,
    CiteOpt,
    CtxOpt,
    EncoderOpt,
    EndpointOpt,
    ExampleOpt,
    ExamplesFileOpt,
    FileOpt,
    GpuLayersOpt,
    ImageModeOpt,
    ImageOpt,
    JsonObjectOpt,
    KvTypeOpt,
    LabelsOpt,
    LookupOpt,
    MaxTokensOpt,
    MmprojOpt,
    ModelOpt,
    NoLogOpt,
    OcrOpt,
    ReadTokensOpt,
    RetrievalOpt,
    SchemaOpt,
    SeedOpt,
    SelectOpt,
    ShotsOpt,
    StatsOpt,
    StrategyOpt,
    SystemOpt,
    TemperatureOpt,
    TemplateOpt,
    ThreadsOpt,
    choice_value,
)
from askgpt.cli.state import state
from askgpt.cli.terminal.render import Messages
from askgpt.runtime.documents.strategies import Strategy
from askgpt.runtime.prompting.image_options import OcrMode


def ask_command(
    ctx: typer.Context,
    prompt: Annotated[list[str] | None, typer.Argument(
        help="The question or instruction; the words are joined by spaces.", metavar="PROMPT",
        show_default=False)] = None,
    model: ModelOpt = None,
    system: SystemOpt = None,
    files: FileOpt = None,
    images: ImageOpt = None,
    ocr: OcrOpt = OcrMode.AUTO,
    image_mode: ImageModeOpt = None,
    encoder: EncoderOpt = None,
    mmproj: MmprojOpt = None,
    share_location: Annotated[bool, typer.Option(
        "--share-location", help="Also tell a served model (--endpoint) where a photo was taken (its GPS "
                                 "position); a local model always gets it.")] = False,
    endpoint: EndpointOpt = None,
    examples: ExampleOpt = None,
    examples_file: ExamplesFileOpt = None,
    strategy: StrategyOpt = Strategy.AUTO,
    read_tokens: ReadTokensOpt = 1024,
    retrieval: RetrievalOpt = None,
    cite: CiteOpt = None,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = None,
    seed: SeedOpt = None,
    labels: LabelsOpt = None,
    calibrate: CalibrateOpt = False,
    shots: ShotsOpt = None,
    select: SelectOpt = None,
    lookup: LookupOpt = None,
    ctx_size: CtxOpt = None,
    threads: ThreadsOpt = None,
    batch: BatchOpt = None,
    gpu_layers: GpuLayersOpt = None,
    kv_type: KvTypeOpt = None,
    template: TemplateOpt = None,
    json_object: JsonObjectOpt = False,
    schema: SchemaOpt = None,
    extract: Annotated[bool, typer.Option(
        "-x", "--extract", help="Print only the first fenced code block of the answer.")] = False,
    continue_last: Annotated[bool, typer.Option(
        "-c", "--continue", help="Continue the latest conversation (its earlier turns are sent too).")] = False,
    cid: Annotated[str | None, typer.Option(
        "--cid", metavar="ID", help="Continue conversation ID (see askgpt logs).", show_default=False)] = None,
    no_log: NoLogOpt = False,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Neither reuse nor keep evaluated prompt prefixes on disk "
                           "(see `askgpt cache info`).")] = False,
    no_stream: Annotated[bool, typer.Option(
        "--no-stream", help="Print the answer once it is complete.")] = False,
    stats: StatsOpt = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress or warnings on stderr.")] = False,
    debug: Annotated[bool, typer.Option(
        "--debug", help="Show tracebacks and llama.cpp's own log lines (also ASKGPT_DEBUG=1).")] = False,
    show_prompt: Annotated[bool, typer.Option(
        "--show-prompt", help="Print the exact prompt the model would get (its control tokens too) "
                              "and exit without generating.")] = False,
) -> None:
    """Ask the model (the default command). Stdin, when piped, is the document."""
    from askgpt.cli.ask import Streams, run_ask
    from askgpt.session import AskOptions

    debug = debug_enabled(debug)
    opts = AskOptions(
        prompt_words=tuple(prompt or ()), model=model, endpoint=endpoint, system=system,
        files=tuple(files or ()), examples=tuple(examples or ()), examples_file=examples_file,
        images=tuple(images or ()), ocr=ocr.value, image_mode=choice_value(image_mode), encoder=encoder,
        mmproj=mmproj, share_location=share_location, strategy=strategy.value, read_tokens=read_tokens,
        retrieval=choice_value(retrieval), cite=cite,
        temperature=temperature, max_tokens=max_tokens, seed=seed, lookup=lookup, ctx=ctx_size,
        labels=labels, calibrate=calibrate, shots=shots, select=choice_value(select),
        threads=threads, batch=batch, gpu_layers=gpu_layers, kv_type=choice_value(kv_type),
        prefix_cache=not no_cache, continue_last=continue_last, conversation_id=cid, log=not no_log,
        template=template, json_object=json_object, schema=schema, extract=extract,
        stream=not no_stream, stats=stats, debug=debug, show_prompt=show_prompt,
    )
    # A closed stdin (`askgpt ... <&-`) leaves sys.stdin None: treat it as absent.
    stdin_open = sys.stdin is not None
    streams = Streams(
        stdin=sys.stdin.buffer if stdin_open else io.BytesIO(),
        stdin_is_terminal=not stdin_open or sys.stdin.isatty(),
        stdout=sys.stdout, stdout_is_terminal=sys.stdout.isatty(),
    )
    run = state(ctx)
    run_ask(opts, settings=run.settings, engine_factory=run.engine_factory, streams=streams,
            messages=Messages(sys.stderr, quiet=quiet))
