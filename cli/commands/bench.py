"""`askgpt bench speed|startup|needle|icl`: parse the lists, run the measurement, print it."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from askgpt.cli.boundary import Commands
from askgpt.cli.options import (
    BenchCtxOpt,
    FiguresJsonOpt,
    MeasuredModelOpt,
    QuietOpt,
    RetrievalOpt,
    RoundsOpt,
    complete_models,
)
from askgpt.cli.state import state
from askgpt.cli.terminal.render import Messages, print_result
from askgpt.runtime.documents.strategies import LongContextConfig, Retrieval
from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.errors import UsageError
from askgpt.runtime.models.registry import resolve_model
from askgpt.runtime.store.settings import Settings

app = Commands(help="Measure askgpt on this machine.")


@app.command("speed")
def bench_speed(
    ctx: typer.Context,
    model: MeasuredModelOpt = None,
    ctx_size: BenchCtxOpt = 2048,
    rounds: RoundsOpt = 3,
    n_decode: Annotated[int, typer.Option("-n", "--tokens", min=8, metavar="N",
                                          help="Tokens to generate per round.")] = 128,
    as_json: FiguresJsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Prefill and decode tokens/s through askgpt against raw llama-cpp-python, interleaved."""
    run = state(ctx)
    measure_speed(model=model, ctx=ctx_size, rounds=rounds, n_decode=n_decode, as_json=as_json,
                  settings=run.settings, engine_factory=run.engine_factory, messages=Messages(sys.stderr, quiet=quiet))


@app.command("startup")
def bench_startup(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("-m", "--model", metavar="NAME|PATH",
                                              help="Model to answer with [default: as for ask].",
                                              autocompletion=complete_models)] = None,
    ctx_size: Annotated[int, typer.Option("--ctx", min=256, metavar="N", help="Context window of both.")] = 4096,
    rounds: RoundsOpt = 7,
    as_json: FiguresJsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Whole-process times of --help, --version and a one-token answer, against a bare
    llama-cpp-python script answering the same message."""
    run = state(ctx)
    measure_startup(model=model, ctx=ctx_size, rounds=rounds, as_json=as_json, settings=run.settings,
                    engine_factory=run.engine_factory, messages=Messages(sys.stderr, quiet=quiet))


@app.command("needle")
def bench_needle(
    ctx: typer.Context,
    model: MeasuredModelOpt = None,
    sizes: Annotated[str, typer.Option("--sizes", metavar="LIST",
                                       help="Input sizes in tokens (k = 1,000).")] = "2k,8k,32k,128k",
    depths: Annotated[str, typer.Option("--depths", metavar="LIST",
                                        help="Needle depths in % (exact's grid).")]
    = "0,10,20,30,40,50,60,70,80,90,100",
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Haystacks per cell of exact's grid.")] = 2,
    fillers: Annotated[str, typer.Option("--filler", metavar="LIST",
                                         help="synthetic and/or prose (the stdlib's docstrings).")]
    = "synthetic,prose",
    kinds: Annotated[str, typer.Option("--kinds", metavar="LIST",
                                       help="all, or some of exact (the grid: the question repeats the fact), "
                                            "paraphrase, distractors, multi-value, multi-query, aggregate "
                                            "(worded apart from their facts, in prose filler).")] = "all",
    trials: Annotated[int, typer.Option("--trials", min=1, metavar="N",
                                        help="Haystacks per size for each kind but exact.")] = 4,
    ctx_size: Annotated[int, typer.Option("--ctx", min=256, metavar="N", help="Context size.")] = 4096,
    read_tokens: Annotated[int, typer.Option("--read-tokens", metavar="N", help="As for ask.")] = 1024,
    retrieval: RetrievalOpt = None,
    copy_bias: Annotated[bool | None, typer.Option(
        "--copy-bias/--no-copy-bias", help="Favour the evidence's own tokens while a retrieved answer is "
                                           "written, as ask does (off: to measure what it adds) "
                                           "[default: the config's copy_bias, true].", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print recall per kind and size, and every cell, "
                                                             "as JSON.")] = False,
    plot: Annotated[str | None, typer.Option("--plot", metavar="PNG",
                                             help="Draw exact's grid as a heatmap and recall by kind "
                                                  "(needs matplotlib).")] = None,
) -> None:
    """Needle in a haystack: recall of planted facts by kind, input size and depth, through --strategy auto."""
    run = state(ctx)
    measure_needle(model=model, sizes=sizes, depths=depths, seeds=seeds, fillers=fillers, kinds=kinds,
                   trials=trials, ctx=ctx_size, read_tokens=read_tokens, retrieval=retrieval, copy_bias=copy_bias,
                   as_json=as_json, plot=plot, settings=run.settings, engine_factory=run.engine_factory,
                   messages=Messages(sys.stderr, quiet=False))


@app.command("icl")
def bench_icl(
    ctx: typer.Context,
    models: Annotated[list[str] | None, typer.Option("-m", "--model", metavar="NAME|PATH",
                                                     help="A model to measure, repeatable [default: as for ask].",
                                                     show_default=False, autocompletion=complete_models)] = None,
    tasks: Annotated[str | None, typer.Option("--tasks", metavar="LIST",
                                              help="Built-in tasks: sentiment, topic, translate, arithmetic, "
                                                   "unscramble, antonyms [default: all].",
                                              show_default=False)] = None,
    task_files: Annotated[list[str] | None, typer.Option("--task-file", metavar="FILE",
                                                         help="Your own task: JSONL of {input, output}, split "
                                                              "into a pool and a test set (repeatable).",
                                                         show_default=False)] = None,
    system: Annotated[str | None, typer.Option("-s", "--system", metavar="TEXT",
                                               help="The task description for --task-file.",
                                               show_default=False)] = None,
    shots: Annotated[str, typer.Option("--shots", metavar="LIST",
                                       help="Numbers of examples in the prompt.")] = "0,1,2,4,8,16",
    seeds: Annotated[int, typer.Option("--seeds", min=1, metavar="N",
                                       help="Random draws of examples per k.")] = 3,
    select: Annotated[str, typer.Option("--select", metavar="LIST",
                                        help="random, similar and/or diverse.")] = "random",
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Also measure label tasks calibrated.")] = False,
    ctx_size: BenchCtxOpt = 2048,
    threads: Annotated[int, typer.Option("--threads", min=1, metavar="N",
                                         help="CPU threads (short inputs gain little from more, and lose "
                                              "much on a busy machine).")] = 1,
    as_json: FiguresJsonOpt = False,
    plot: Annotated[str | None, typer.Option("--plot", metavar="PNG",
                                             help="Draw accuracy against k (needs matplotlib).")] = None,
    save_template: Annotated[str | None, typer.Option("--save-template", metavar="NAME",
                                                      help="Save the best setting for the task as a template.",
                                                      show_default=False)] = None,
    quiet: QuietOpt = False,
) -> None:
    """In-context learning: accuracy against the number of examples, per task, with 95% intervals."""
    run = state(ctx)
    measure_icl(models=list(models or ()), tasks=tasks, task_files=list(task_files or ()), system=system,
                shots=shots, seeds=seeds, select=select, calibrate=calibrate, ctx=ctx_size, threads=threads,
                as_json=as_json, plot=plot, save_template=save_template, settings=run.settings,
                engine_factory=run.engine_factory, messages=Messages(sys.stderr, quiet=quiet))


def parse_sizes(text: str) -> list[int]:
    try:
        return [int(float(p[:-1]) * 1000) if p.lower().endswith("k") else int(p)
                for p in (x.strip() for x in text.split(",")) if p]
    except ValueError:
        raise UsageError(f"--sizes must be numbers like 2k,8000, not {text!r}") from None


def parse_depths(text: str) -> list[float]:
    try:
        depths = [float(p) / 100 for p in text.split(",") if p.strip()]
    except ValueError:
        raise UsageError(f"--depths must be percentages like 0,50,100, not {text!r}") from None
    if not depths or any(not 0 <= d <= 1 for d in depths):
        raise UsageError("--depths must lie between 0 and 100")
    return depths


def measure_needle(*, model: str | None, sizes: str, depths: str, seeds: int, fillers: str, kinds: str,
                   trials: int, ctx: int, read_tokens: int, as_json: bool, plot: str | None, settings: Settings,
                   engine_factory: EngineFactory, messages: Messages, retrieval: Retrieval | None = None,
                   copy_bias: bool | None = None) -> None:
    from askgpt.runtime.bench.needle import format_grid, plot_grid, run_needle
    from askgpt.runtime.bench.needle_kinds import kind_list
    from askgpt.session import check_retrieval, copy_logit

    kind_of_retrieval = check_retrieval(retrieval, settings)  # as for ask: the option, else the config's
    size_list, depth_list, kind_choices = parse_sizes(sizes), parse_depths(depths), kind_list(kinds)
    filler_list = [f.strip() for f in fillers.split(",") if f.strip()]
    if not filler_list or set(filler_list) - {"synthetic", "prose"}:
        raise UsageError("--filler takes synthetic and/or prose")
    ref = resolve_model(model or settings.defaults.model, settings.paths.models_dir)
    engine = engine_factory(ref, EngineConfig(n_ctx=ctx))
    try:
        with messages.progress() as progress:
            result = run_needle(engine, sizes=size_list, depths=depth_list, seeds=seeds, fillers=filler_list,
                                config=LongContextConfig(read_tokens=read_tokens, retrieval=kind_of_retrieval,
                                                         copy_logit=copy_logit(settings, copy_bias)),
                                kinds=kind_choices, trials=trials,
                                progress=lambda done, total: progress("needle", done, total))
    finally:
        engine.close()
    print_result(result.to_json(), format_grid(result, size_list, depth_list, filler_list), as_json=as_json)
    if plot:
        try:
            plot_grid(result, size_list, depth_list, filler_list, plot)
        except ImportError:
            raise UsageError("--plot needs matplotlib", hint='pip install "askgpt[plot]"') from None


def measure_speed(*, model: str | None, ctx: int, rounds: int, n_decode: int, as_json: bool, settings: Settings,
              engine_factory: EngineFactory, messages: Messages) -> None:
    import time

    from askgpt.runtime.bench.speed import run_speed
    from askgpt.runtime.engine.llama.tools import raw_speed

    ref = resolve_model(model or settings.defaults.model, settings.paths.models_dir)
    started = time.perf_counter()
    engine = engine_factory(ref, EngineConfig(n_ctx=ctx))
    load_seconds = time.perf_counter() - started
    try:
        with messages.progress() as progress:
            result = run_speed(engine, raw_speed, rounds=rounds, n_decode=n_decode,  # type: ignore[arg-type]
                               load_seconds=load_seconds, progress=lambda d, t: progress("rounds", d, t))
    finally:
        engine.close()
    print_result(result.to_json(), "\n".join(result.lines()), as_json=as_json)


def measure_startup(*, model: str | None, ctx: int, rounds: int, as_json: bool, settings: Settings,
                engine_factory: EngineFactory, messages: Messages) -> None:
    import shutil
    import sys
    import tempfile
    from pathlib import Path

    from askgpt.runtime.bench.startup import run_startup
    from askgpt.runtime.engine.base import TokenIds
    from askgpt.runtime.engine.llama.tools import BARE_ANSWER_SCRIPT
    from askgpt.runtime.prompting.generate import GenerationConfig, prepare
    from askgpt.runtime.prompting.request import DEFAULT_SYSTEM, Request
    from askgpt.runtime.system import physical_cores

    ref = resolve_model(model or settings.defaults.model, settings.paths.models_dir)
    # The console script beside this interpreter: what a user's shell runs.
    askgpt = shutil.which("askgpt", path=str(Path(sys.executable).parent)) or shutil.which("askgpt")
    if askgpt is None:
        raise UsageError("the askgpt command is not on PATH", hint="install askgpt with pip")
    threads = settings.defaults.threads or physical_cores()
    question = "Say hi."
    engine = engine_factory(ref, EngineConfig(n_ctx=ctx))
    try:  # the token ids askgpt sends for the question, for the bare script to send too
        parts = prepare(engine, Request(question, system=DEFAULT_SYSTEM), GenerationConfig(1)).parts
    finally:
        engine.close()
    ids = ",".join(str(t) for part in parts if isinstance(part, TokenIds) for t in part.ids)
    one_token = [askgpt, "-m", str(ref.path), "--ctx", str(ctx), "--threads", str(threads),
                 "-n", "1", "-t", "0", "--no-cache", question]
    bare = [sys.executable, "-c", BARE_ANSWER_SCRIPT, str(ref.path), str(ctx), str(threads), ids]
    with tempfile.TemporaryDirectory() as home:
        # A fresh home: no config file or cache of the user's changes what is measured.
        env = {**os.environ, "ASKGPT_HOME": home}
        env.pop("ASKGPT_MODEL", None)
        with messages.progress() as progress:
            result = run_startup([
                ("python -c pass", [sys.executable, "-c", "pass"]),
                ("askgpt --help", [askgpt, "--help"]),
                ("askgpt --version", [askgpt, "--version"]),
                ("bare llama-cpp-python script", bare),
                ("askgpt one-token answer", one_token),
            ], env=env, rounds=rounds, progress=lambda d, t: progress("rounds", d, t))
    print_result(result.to_json(), "\n".join(result.lines()), as_json=as_json)


def parse_shots(text: str) -> list[int]:
    """``--shots 0,1,4``: numbers of examples, each 0 or more, in increasing order."""
    parts = [p for p in (x.strip() for x in text.split(",")) if p]
    # Digits only: int() would also take "-0", "+1" and "1_0".
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise UsageError(f"--shots must be whole numbers like 0,1,4, not {text!r}")
    shots = sorted({int(p) for p in parts})
    if not shots:
        raise UsageError("--shots must list numbers of examples, 0 or more, e.g. 0,1,4")
    return shots


def parse_list(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def measure_icl(*, models: list[str], tasks: str | None, task_files: list[str], system: str | None,
            shots: str, seeds: int, select: str, calibrate: bool, ctx: int, threads: int, as_json: bool,
            plot: str | None, save_template: str | None, settings: Settings, engine_factory: EngineFactory,
            messages: Messages) -> None:
    from pathlib import Path

    from askgpt.runtime.bench.icl import (
        TaskKind,
        check_names,
        format_results,
        pick_tasks,
        plot_curves,
        results_json,
        run_icl,
        settings_for,
        task_from_file,
    )
    from askgpt.runtime.icl.answers import has_logprobs
    from askgpt.runtime.icl.selection import parse_select

    shot_list = parse_shots(shots)
    selects = [parse_select(s) for s in parse_list(select)]
    if not selects:
        raise UsageError("--select takes random, similar and/or diverse")
    if seeds < 1:
        raise UsageError("--seeds must be at least 1")
    task_list = [task_from_file(Path(f), system=system) for f in task_files]
    if tasks or not task_list:
        task_list = pick_tasks(parse_list(tasks)) + task_list
    check_names(task_list)
    if save_template is not None:
        from askgpt.runtime.store.templates import NAME_PATTERN

        if len(task_list) != 1:
            raise UsageError("--save-template keeps the best setting of one task",
                             hint="run one task: --tasks NAME or --task-file FILE")
        if not NAME_PATTERN.match(save_template):
            raise UsageError(f"bad template name {save_template!r}",
                             hint="use lowercase letters, digits, - and _ (up to 64)")
    measured = settings_for(selects, calibrate)
    results = []
    for name in models or [None]:
        ref = resolve_model(name or settings.defaults.model, settings.paths.models_dir)
        engine = engine_factory(ref, EngineConfig(n_ctx=ctx, n_threads=threads))
        try:
            if not has_logprobs(engine) and any(t.kind is TaskKind.LABELS for t in task_list):
                raise UsageError(f"{ref.name} is a served model: it gives no log-probabilities to score the "
                                 "label tasks with", hint="measure only generation tasks, e.g. --tasks "
                                                          "translate,arithmetic,unscramble,antonyms")
            with messages.progress() as progress:
                label = engine.info.name
                results.append(run_icl(engine, task_list, shots=shot_list, seeds=seeds, settings=measured,
                                       progress=lambda d, t, label=label: progress(label, d, t)))
        finally:
            engine.close()
    print_result(results_json(results, shot_list, measured, seeds),
                 format_results(results, shot_list, measured, seeds), as_json=as_json)
    if plot:
        try:
            plot_curves(results, shot_list, measured, plot)
        except ImportError:
            raise UsageError("--plot needs matplotlib", hint='pip install "askgpt[plot]"') from None
        messages.warn(f"plot saved to {plot}")
    if save_template is not None:
        from askgpt.runtime.bench.icl import best_template
        from askgpt.runtime.store.templates import TemplateStore

        template, note = best_template(save_template, results[0], task_list[0])
        path = TemplateStore(settings.paths.templates_dir).save(template)
        messages.line(f"askgpt: saved template {save_template} ({path}): {note}")
