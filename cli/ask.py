"""The `ask` command's glue: options in, runtime calls, rendering out."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TextIO

from askgpt.assistant import Assistant
from askgpt.cli.render import (
    AnswerSink,
    Messages,
    format_cache_events,
    format_quotes,
    format_stats,
    make_sink,
    neutralize,
    stream_answer,
)
from askgpt.conversation import exchange_of, fit_history, not_replayed, turns_of
from askgpt.runtime.documents.inputs import Inputs, collect_inputs
from askgpt.runtime.documents.strategies import LongContext, LongContextConfig, Strategy
from askgpt.runtime.engine.base import Engine
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import (
    InputNotFoundError,
    ModelNotFoundError,
    OutputError,
    StructuredOutputError,
    UsageError,
)
from askgpt.runtime.icl.labels import LabelScores
from askgpt.runtime.icl.options import IclOptions, IclPlan, plan_request
from askgpt.runtime.models.registry import ModelRef, find_mmproj
from askgpt.runtime.prompting.generate import Answer, GenerationConfig, StopReason, prepare, shown
from askgpt.runtime.prompting.request import DEFAULT_SYSTEM as PROMPT_DEFAULT_SYSTEM
from askgpt.runtime.prompting.request import Request, Turn
from askgpt.runtime.prompting.structured import ANY_OBJECT, check_json, constrain, first_code_block, load_schema
from askgpt.runtime.store.log import ConversationLog, LogError, new_conversation_id
from askgpt.runtime.store.settings import (
    ENV_OVERRIDES,
    KV_CACHE_TYPES,
    Settings,
    context_size,
    engine_config,
    model_ref,
    system_prompt,
)
from askgpt.runtime.store.templates import TemplateStore, apply_template, template_words

DEFAULT_SYSTEM = PROMPT_DEFAULT_SYSTEM  # the CLI's name for it (tests and benchmarks import it from here)


@dataclass(frozen=True)
class AskOptions:
    """The ask command line, parsed. ``None`` means "use the configured default"."""

    prompt_words: tuple[str, ...] = ()
    model: str | None = None
    endpoint: str | None = None  # --endpoint: an OpenAI-compatible server instead of a local model
    system: str | None = None
    files: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    examples_file: str | None = None
    images: tuple[str, ...] = ()
    ocr: str = "auto"
    image_mode: str | None = None
    encoder: str | None = None  # --encoder: auto|builtin|clip|NAME
    mmproj: str | None = None  # --mmproj: the model's vision projector
    strategy: str = "auto"
    read_tokens: int = 1024
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    lookup: int | None = None
    ctx: int | None = None
    threads: int | None = None
    batch: int | None = None
    gpu_layers: int | None = None
    kv_type: str | None = None
    prefix_cache: bool = True  # --no-cache turns it off for one call
    continue_last: bool = False  # -c: continue the latest conversation
    conversation_id: str | None = None  # --cid ID: continue that one
    log: bool = True  # --no-log skips logging this exchange
    template: str | None = None  # -T NAME: a saved task description and examples
    json_object: bool = False  # --json: the answer is a JSON object
    schema: str | None = None  # --schema FILE|JSON: ... matching this schema
    extract: bool = False  # -x: print only the answer's first fenced code block
    stream: bool = True
    stats: bool = False
    debug: bool = False  # also show llama.cpp's own log lines
    show_prompt: bool = False  # --show-prompt: print the prompt the model would get, run nothing
    labels: str | None = None  # --labels A,B,...|auto: the answer is one of them
    calibrate: bool = False  # --calibrate: correct the label probabilities (Zhao et al. 2021)
    shots: int | None = None  # --shots K: draw K of the examples per input
    select: str | None = None  # --select random|similar|diverse: how


@dataclass(frozen=True)
class Streams:
    stdin: BinaryIO
    stdin_is_terminal: bool
    stdout: TextIO
    stdout_is_terminal: bool


def _whole(pieces: Iterator[str], is_json: bool) -> Iterator[str]:
    """--no-stream: the answer once complete. JSON that is not complete is not written at
    all (a script would get half an object); the error says why, the log keeps it."""
    text = "".join(pieces)
    if is_json:
        try:
            check_json(text)
        except StructuredOutputError as exc:
            raise StructuredOutputError(f"{exc.message}, so nothing was written", hint=exc.hint) from exc
    yield text


def _write(stream: TextIO, text: str) -> None:
    """Text to stdout past the answer itself; a write error is an `OutputError`, as in `_CheckedSink`."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _output_error(exc) from exc


def _output_error(exc: OSError) -> OutputError:
    return OutputError(f"cannot write the answer to stdout: {exc.strerror or exc}",
                       hint="check the file or device stdout goes to")


class _CheckedSink:
    """A sink whose write errors are an `OutputError` (a full disk: one line, exit 1);
    a closed pipe stays a BrokenPipeError (the reader went away: askgpt stops quietly)."""

    def __init__(self, sink: AnswerSink) -> None:
        self._sink = sink

    def write(self, piece: str) -> None:
        try:
            self._sink.write(piece)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from exc

    def finish(self) -> None:
        try:
            self._sink.finish()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise _output_error(exc) from exc


def resolve_ref(settings: Settings, model: str | None, endpoint: str | None) -> ModelRef:
    """`model_ref`, whose error says where a default model's name came from."""
    try:
        return model_ref(settings, model, endpoint)
    except ModelNotFoundError as exc:
        configured = settings.defaults.model
        if model is not None or configured is None or endpoint or settings.defaults.endpoint:
            raise
        where = (f"${ENV_OVERRIDES['model']}" if os.environ.get(ENV_OVERRIDES["model"]) == configured
                 else f"the model key of {settings.paths.config_file}")
        raise ModelNotFoundError(f"{exc.message} (the default model, set by {where})", hint=exc.hint) from exc


def _check_vision_options(opts: AskOptions, settings: Settings) -> None:
    """The image options are checked even when no image is given: a typo is not ignored."""
    if opts.ocr == "auto" and opts.image_mode is None and opts.encoder is None:
        return
    # Imported only here: the vision package pulls in numpy.
    from askgpt.vision.clip import choose_encoder
    from askgpt.vision.pipeline import ImageMode, OcrMode, parse_mode

    parse_mode(opts.ocr, OcrMode, "--ocr")
    if opts.image_mode is not None:
        parse_mode(opts.image_mode, ImageMode, "--image-mode")
    if opts.encoder is not None:
        choose_encoder(settings.paths.data_dir, opts.encoder)


class _NoGeneration:
    """The engine for --show-prompt: everything but generating, which would be a model run."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def generate(self, prompt: object, sampling: object) -> Iterator[int]:
        raise UsageError("with this strategy the prompt is made of the model's own notes on each part of "
                         "the documents, so --show-prompt cannot show it without running the model",
                         hint="use --strategy retrieve, map-reduce or stuff, or a larger --read-tokens")


def _show_prompt(engine: Engine, request: Request, config: GenerationConfig, long_context: LongContextConfig,
                 streams: Streams, messages: Messages) -> None:
    """--show-prompt: the prompt exactly as the model would get it, control tokens and all
    (documents longer than --read-tokens as the strategy would cut them), on stdout."""
    quiet = _NoGeneration(engine)
    context = LongContext(quiet, long_context)  # type: ignore[arg-type]
    _, report = context.answer(request, config)  # builds and checks the prompt; generates nothing
    if report is not None and report.strategy is not Strategy.STUFF:
        messages.warn(report.line())
    final = context.last_request or request
    text = shown(quiet, prepare(quiet, final, config))  # type: ignore[arg-type]
    _write(streams.stdout, (neutralize(text) if streams.stdout_is_terminal else text) + "\n")


def run_ask(opts: AskOptions, *, settings: Settings, engine_factory: EngineFactory,
            streams: Streams, messages: Messages) -> None:
    # Every option is checked before anything is read or loaded, used or not.
    if opts.ctx is not None:
        context_size(opts.ctx)
    _strategy(opts.strategy)
    _kv_type(opts.kv_type or settings.defaults.kv_type)
    if not opts.images:
        _check_vision_options(opts, settings)
    template = TemplateStore(settings.paths.templates_dir).get(opts.template) if opts.template else None
    icl = IclOptions.of(labels=opts.labels, calibrate=opts.calibrate, shots=opts.shots, select=opts.select,
                        seed=opts.seed)
    if template is not None:
        icl = icl.over(template.labels, template.shots, template.select)
    icl.check()
    if icl.labels is not None and (opts.json_object or opts.schema is not None or opts.extract):
        raise UsageError("--labels answers with a label; it does not go with --json, --schema or -x")
    words = opts.prompt_words
    if template is not None:
        words, template = template_words(template, words)
    inputs = collect_inputs(
        prompt_words=words, files=opts.files,
        stdin=streams.stdin, stdin_is_terminal=streams.stdin_is_terminal,
        system=system_prompt(settings, opts.system), example_args=opts.examples, examples_file=opts.examples_file,
        image_args=opts.images,
    )
    try:
        if template is not None:
            inputs = replace(inputs, request=apply_template(template, inputs.request,
                                                            system_given=opts.system is not None))
        plan = plan_request(inputs.request, icl)
        if plan.labels_from_examples and plan.labels is not None:
            messages.warn(f"labels from the examples: {', '.join(plan.labels)}")
        inputs = replace(inputs, request=plan.request)
        _answer(opts, inputs, settings=settings, engine_factory=engine_factory,
                streams=streams, messages=messages, plan=plan)
    finally:
        inputs.cleanup()


def _answer(opts: AskOptions, inputs: Inputs, *, settings: Settings,
            engine_factory: EngineFactory, streams: Streams, messages: Messages, plan: IclPlan) -> None:
    d = settings.defaults
    labels = plan.labels
    conversation = _Conversation(opts, settings, messages, plan)
    request = replace(inputs.request, history=conversation.turns())
    vision = VisionStep(opts, settings, messages, inputs.stdin_image) if opts.images else None
    config = GenerationConfig(
        max_tokens=opts.max_tokens if opts.max_tokens is not None else d.max_tokens,
        sampling=SamplingConfig(
            temperature=opts.temperature if opts.temperature is not None else d.temperature,
            repeat_penalty=d.repeat_penalty,
            seed=opts.seed,
            lookup_tokens=opts.lookup if opts.lookup is not None else d.lookup_tokens,
        ),
    )
    schema = _schema(opts)
    if schema is not None:
        request, config = constrain(request, config, schema)
    long_context = LongContextConfig(strategy=_strategy(opts.strategy), read_tokens=opts.read_tokens)
    ref = resolve_ref(settings, opts.model, opts.endpoint)
    if opts.mmproj:
        find_mmproj(ref, opts.mmproj)  # a missing file fails now, image or not
    # The Python API's object: the CLI is a thin layer over it (assistant).
    assistant = Assistant(settings=settings, engine_factory=engine_factory, ref=ref, load=engine_config(
        settings, ref, ctx=opts.ctx, threads=opts.threads, batch=opts.batch, gpu_layers=opts.gpu_layers,
        kv_type=_kv_type(opts.kv_type or d.kv_type), native_log=messages.raw if opts.debug else None,
        prefix_cache=opts.prefix_cache))
    started = time.perf_counter()
    with messages.status(f"Loading {ref.name}…"):
        engine = assistant.engine
    load_seconds = time.perf_counter() - started
    info = engine.info
    if request.history:
        request, dropped = fit_history(engine, request)
        if dropped:
            messages.warn(f"left out the {dropped} oldest turn(s) of the conversation to fit the context")
    if info.n_ctx > info.n_ctx_train > 0:
        messages.warn(f"--ctx {info.n_ctx} is past the {info.n_ctx_train} tokens {ref.name} was trained on; "
                      "answers may degrade")
    try:
        if vision is not None:
            request = replace(request, images=vision.blocks(engine, ref))
        if opts.show_prompt:
            _show_prompt(engine, request, config, long_context, streams, messages)
            return
        if labels is not None:
            # The whole request is scored (no long-document strategy): a label needs the input itself.
            response = assistant.choose(request, labels, calibrate=plan.calibrate, config=config)
            if response.note:
                messages.warn(response.note)
        else:
            with messages.progress() as progress:
                response = assistant.respond(request, config, long_context, progress=progress)
        answer, report = response.answer, response.report
        if report is not None and report.strategy is not Strategy.STUFF:
            messages.warn(report.line())
        # JSON, extracted code and labels go out as they are, never rendered as Markdown.
        sink = _CheckedSink(make_sink(streams.stdout, markdown=streams.stdout_is_terminal and schema is None
                                      and not opts.extract and labels is None))
        # One generator for the whole answer, closed below however writing ends: a reader that
        # went away (`| head -c 20`) then stops it as Ctrl-C does, and it is logged the same way.
        pieces = iter(answer)
        try:
            conversation.record_when_done(ref, request, answer, config,
                                          vision.attachments() if vision is not None else ())
            if opts.extract:
                stream_answer(_first_block(pieces, messages), sink, waiting=messages.status("Writing the answer…"))
            elif opts.stream:
                stream_answer(pieces, sink, waiting=messages.status("Reading the prompt…"))
            else:  # lazily, so the spinner covers the whole generation
                stream_answer(_whole(pieces, schema is not None), sink, waiting=messages.status("Writing the answer…"))
            if report is not None and report.quotes:
                quotes = format_quotes(report.quotes)
                _write(streams.stdout, neutralize(quotes) if streams.stdout_is_terminal else quotes)
        finally:
            pieces.close()  # type: ignore[attr-defined]
            conversation.record()
            if getattr(engine, "image_urls_refused", False):  # a served model that takes no images
                messages.warn("the server did not take the images themselves; the model got what askgpt's "
                              "encoders found in them")
            if opts.stats and answer.stats is not None:
                if vision is not None:
                    for line in vision.stats_lines():
                        messages.line(line)
                if report is not None:
                    messages.line(report.stats_line())
                messages.line(format_stats(answer.stats, load_seconds=load_seconds, kv_bytes=info.kv_bytes))
                if response.scores is not None:
                    for line in label_lines(response.scores):
                        messages.line(line)
                # Only the llama.cpp engine has an on-disk prefix cache and prompt lookup.
                guessed = getattr(engine, "lookup_guessed", 0)
                if guessed:
                    messages.line(f"lookup: kept {engine.lookup_kept} of {guessed} guessed tokens")  # type: ignore[attr-defined]
                events = getattr(engine, "cache_events", None)
                if events is not None:
                    messages.line(format_cache_events(events))
    finally:
        assistant.close()
    stats = answer.stats
    if schema is not None and stats is not None and stats.stop_reason is not StopReason.INTERRUPTED:
        check_json(answer.emitted)
    if stats is not None and stats.stop_reason is StopReason.LOOP:
        messages.warn("stopped early: the answer started repeating itself")
    elif stats is not None and stats.stop_reason is StopReason.LENGTH:
        messages.warn(f"stopped at the {config.max_tokens}-token limit (raise it with -n)")


def label_lines(scores: LabelScores) -> list[str]:
    """--stats with --labels: each label's probability (normalized over the labels), and
    with --calibrate the model's own ones and the content-free bias that corrected them."""
    def shares(probabilities: tuple[float, ...]) -> str:
        return " | ".join(f"{label} {p:.3f}" for label, p in zip(scores.labels, probabilities, strict=True))

    lines = [f"labels: {shares(scores.probabilities)}" + (" (calibrated)" if scores.raw is not None else "")]
    if scores.raw is not None:
        lines.append(f"labels before calibration: {shares(scores.raw.probabilities)}")
    if scores.content_free is not None:
        lines.append(f"content-free inputs: {shares(scores.content_free)}")
    return lines


def _schema(opts: AskOptions) -> dict | None:
    if opts.schema is not None:
        return load_schema(opts.schema)
    return dict(ANY_OBJECT) if opts.json_object else None


def _first_block(pieces: Iterator[str], messages: Messages) -> Iterator[str]:
    """-x: the first fenced code block of the whole answer (the answer itself if it has none)."""
    text = "".join(pieces)
    block = first_code_block(text)
    if block is None:
        messages.warn("the answer has no fenced code block; printing it whole")
    yield text if block is None else block


def _kv_type(value: str) -> str:
    if value not in KV_CACHE_TYPES:
        raise UsageError(f"--kv-type must be one of {'|'.join(KV_CACHE_TYPES)}, not {value!r}")
    return value


def _strategy(value: str) -> Strategy:
    try:
        return Strategy(value.lower())
    except ValueError:
        raise UsageError(f"--strategy must be one of {'|'.join(s.value for s in Strategy)}, "
                         f"not {value!r}") from None


class _Conversation:
    """The conversation log for one ask: earlier turns in (-c/--cid), this exchange out.
    The log never stops an answer: a failure to read or write it is a warning."""

    def __init__(self, opts: AskOptions, settings: Settings, messages: Messages, plan: IclPlan | None = None) -> None:
        self._log = ConversationLog(settings.paths.log_file)
        self._plan = plan
        self._messages = messages
        self._write = opts.log and settings.defaults.log
        self._continue = opts.continue_last or opts.conversation_id is not None
        self._asked_id = opts.conversation_id
        # What this ask attaches again needs no warning that it is not replayed.
        given = (*opts.files, *opts.images)
        self._attached = {*given, *(Path(g).name for g in given)}
        self.id = new_conversation_id()
        self._pending: tuple | None = None

    def turns(self) -> tuple[Turn, ...]:
        if not self._continue:
            return ()
        try:
            cid = self._asked_id or self._log.latest_conversation()
            if cid is None:
                self._messages.warn("no earlier conversation in the log: starting a new one")
                return ()
            exchanges = self._log.conversation(cid)
        except LogError as exc:
            self._messages.warn(f"{exc.message}; answering without the earlier turns")
            return ()
        if not exchanges:
            raise InputNotFoundError(f"no conversation {cid!r} in the log", hint="askgpt logs lists them")
        self.id = cid
        left = [name for name in not_replayed(exchanges) if name not in self._attached]
        if left:
            self._messages.warn(f"the earlier turns' attachments are not sent again (the log keeps their names, "
                                f"not their contents): {', '.join(left)}; give them again (-f, -i) to ask about them")
        return turns_of(exchanges)

    def record_when_done(self, ref: ModelRef, request: Request, answer: Answer, config: GenerationConfig,
                         images: tuple) -> None:
        self._pending = (ref, request, answer, config, images)

    def record(self) -> None:
        if not self._write or self._pending is None:
            return
        ref, request, answer, config, images = self._pending
        if answer.stats is None:  # never started: nothing was answered
            return
        options = {"temperature": config.sampling.temperature, "max_tokens": config.max_tokens,
                   "seed": config.sampling.seed, "lookup_tokens": config.sampling.lookup_tokens}
        if self._continue:  # how many earlier turns the model got (`askgpt logs show` lists them)
            options["replayed_turns"] = len(request.history)
        if self._plan is not None and self._plan.labels is not None:
            options["labels"] = list(self._plan.labels)
            options["calibrate"] = self._plan.calibrate
        if self._plan is not None and self._plan.shots is not None:
            options.update(shots=self._plan.shots, select=self._plan.select, example_seed=self._plan.seed)
        try:
            self._log.record(exchange_of(self.id, ref, request, answer, options=options, images=images))
        except (LogError, OSError) as exc:
            self._messages.warn(f"{getattr(exc, 'message', exc)}; this exchange was not logged")


class VisionStep:
    """Images for one ask: loaded and checked before the model loads (a bad file fails
    fast), encoded once the model is known (the projector depends on it)."""

    def __init__(self, opts: AskOptions, settings: Settings, messages: Messages, stdin_image: bytes | None) -> None:
        # Imported here: numpy, Pillow and onnxruntime load only when an image is given.
        from askgpt.vision.pipeline import ImageMode, OcrMode, VisionConfig, load_images, parse_mode

        self._config = VisionConfig(
            ocr=parse_mode(opts.ocr, OcrMode, "--ocr"),  # type: ignore[arg-type]
            mode=parse_mode(opts.image_mode, ImageMode, "--image-mode") if opts.image_mode  # type: ignore[arg-type]
            else VisionConfig().mode,
            encoder=opts.encoder or settings.defaults.encoder,
        )
        self._mmproj = opts.mmproj
        self._settings = settings
        self._messages = messages
        self._images = load_images(opts.images, stdin_image)
        self._reports: list = []

    def blocks(self, engine: Engine, ref: ModelRef) -> tuple:
        from askgpt.assistant import image_blocks

        with self._messages.status("Looking at the images…"):
            blocks, self._reports = image_blocks(engine, ref, self._settings, self._images, self._config,
                                                 mmproj=self._mmproj, notify=self._messages.warn)
        return blocks

    def attachments(self) -> tuple:
        from askgpt.runtime.store.log import Attachment

        return tuple(Attachment(im.source, _size(im.source), im.sha256) for im in self._images)

    def stats_lines(self) -> list[str]:
        return [f"image {r.source}: encode {r.encode_seconds:.3f}s | ocr {r.ocr_seconds:.3f}s | "
                f"{r.rows} embedding rows" for r in self._reports]


def _size(source: str) -> int:
    try:
        return os.stat(source).st_size
    except OSError:  # stdin
        return 0
