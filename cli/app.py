"""The Typer app. Thin: parse, call askgpt.runtime, render, map errors to exit codes.

``askgpt PROMPT...`` is the default command: a first argument that is not a
subcommand is routed to ``ask``, so ``askgpt "hi"`` and ``askgpt models list``
both work.
"""

from __future__ import annotations

import errno
import importlib
import io
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from askgpt import __version__
from askgpt.cli.config import checked_option
from askgpt.cli.render import Messages, format_error
from askgpt.runtime.engine.kinds import EngineFactory
from askgpt.runtime.errors import AskgptError, ExitCode, OutputError
from askgpt.runtime.store.settings import truthy


def _click_exceptions() -> Any:
    """The exceptions module of the Click that Typer runs on: the click package
    for Typer < 0.29, its vendored ``typer._click`` since."""
    core = TyperGroup.__mro__[1].__module__  # "click.core" or "typer._click.core"
    return importlib.import_module(core.rsplit(".", 1)[0] + ".exceptions")


_GROUP_OPTIONS = frozenset({"-h", "--help", "--version", "--install-completion", "--show-completion"})
# `askgpt help` and `askgpt version` alone are what a user means by them, not questions for
# the model (`askgpt ask help` asks the word).
_WORD_COMMANDS = {"help": "--help", "version": "--version"}


class DefaultCommandGroup(TyperGroup):
    """Routes ``askgpt ARGS`` to ``askgpt ask ARGS`` unless ARGS starts with a subcommand."""

    default_command = "ask"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subcommand_metavar = "PROMPT... | COMMAND [ARGS]..."

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if len(args) == 1 and args[0] in _WORD_COMMANDS:
            args = [_WORD_COMMANDS[args[0]]]
        if not args or (args[0] not in self.commands and args[0] not in _GROUP_OPTIONS):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        """Click's own errors (bad option, bad value) also end in one line on stderr."""
        errors = _click_exceptions()
        no_args_help = getattr(errors, "NoArgsIsHelpError", ())
        # Some Typer versions' vendored Click has no Abort of its own (typer.Abort is it).
        aborts = (getattr(errors, "Abort", typer.Abort), typer.Abort)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False,
                              windows_expand_args=windows_expand_args, **extra)
            code = rv if isinstance(rv, int) else 0
        except no_args_help as exc:  # `askgpt models`: show its help
            exc.show()
            code = exc.exit_code
        except errors.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else "askgpt"
            typer.echo(f"askgpt: error: {exc.format_message().rstrip('.')}; see '{where} --help'", err=True)
            code = exc.exit_code
        except errors.ClickException as exc:
            typer.echo(f"askgpt: error: {exc.format_message()}", err=True)
            code = exc.exit_code
        except aborts:  # Ctrl-C while click itself was running
            typer.echo("askgpt: interrupted", err=True)
            code = int(ExitCode.INTERRUPTED)
        except BrokenPipeError:  # outside a command's error boundary (--help, --version)
            _silence_stdout()
            code = int(ExitCode.OK)
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS:
                raise
            _silence_stdout()
            typer.echo(f"askgpt: error: cannot write: {exc.strerror or exc}", err=True)
            code = int(ExitCode.RUNTIME_ERROR)
        code = _flush_stdout(code)
        if standalone_mode:
            sys.exit(code)
        return code


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's own flush at exit neither fails again
    nor prints a second complaint about a stream that cannot be written."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (a test's capture): nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


# A disk (or device) that takes no more: stdout sent to a full disk or /dev/full, a file
# askgpt writes. One line, exit 1; not an internal error.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _flush_stdout(code: int) -> int:
    """Output still buffered is written now, where a failure is one line, not at exit.
    A closed pipe is no error (`askgpt logs | head -1`); a full disk is (exit 1)."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
    except OSError as exc:
        _silence_stdout()
        typer.echo(f"askgpt: error: cannot write to stdout: {exc.strerror or exc}", err=True)
        return int(ExitCode.RUNTIME_ERROR) if code == 0 else code
    except ValueError:  # stdout already closed
        pass
    return code


@contextmanager
def error_boundary(messages: Messages, *, debug: bool) -> Iterator[None]:
    """The one place errors become exit codes and a single line on stderr."""
    try:
        yield
    except AskgptError as exc:
        if debug:
            traceback.print_exc()
        if isinstance(exc, OutputError):
            _silence_stdout()
        messages.line(format_error(exc))
        raise typer.Exit(int(exc.exit_code)) from None
    except KeyboardInterrupt:
        messages.line("askgpt: interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:
        # The reader went away (`askgpt ... | head`): stop quietly, and keep
        # Python from complaining when it flushes stdout at exit.
        _silence_stdout()
        raise typer.Exit(int(ExitCode.OK)) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: still one line, traceback on request
        if debug:
            traceback.print_exc()
        if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
            try:  # output still held for stdout would fail again at exit
                sys.stdout.flush()
            except OSError:
                _silence_stdout()
            messages.line(f"askgpt: error: cannot write: {exc.strerror or exc}")
        else:
            messages.line(f"askgpt: internal error: {type(exc).__name__}: {exc}; rerun with --debug for a traceback")
        raise typer.Exit(int(ExitCode.RUNTIME_ERROR)) from None


def _debug_enabled(flag: bool) -> bool:
    # Read before settings load, so that a broken config file can still be debugged.
    return flag or truthy(os.environ.get("ASKGPT_DEBUG"))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"askgpt {__version__}")
        raise typer.Exit()


def _default_engine_factory() -> EngineFactory:
    from askgpt.runtime.engine.kinds import load_engine

    return load_engine


HELP = """Ask a local model from the terminal, offline.

\b
  askgpt "What is the capital of France?"
  cat report.txt | askgpt "summarize this"
  askgpt -f notes.md -f todo.txt "what is overdue?"
  askgpt "describe this" -i photo.jpg
  askgpt -s "Translate English to French." -e "sea otter => loutre de mer" "cheese"
  git diff | askgpt -T commit-message
  askgpt --schema '{"city": "string"}' "the capital of France"
  askgpt -c "and in French?"
  askgpt chat
  askgpt models list

With no subcommand, the arguments are a question for `askgpt ask` (see `askgpt ask --help`
for every option). To ask a question that starts with a subcommand's name, write `askgpt ask ...`;
`askgpt help` and `askgpt version` alone are --help and --version.
"""


def complete_models(incomplete: str) -> list[str]:
    """Shell completion for -m: the models askgpt knows by name (headers are not read)."""
    from askgpt.runtime.models.registry import list_models
    from askgpt.runtime.store.settings import resolve_paths

    names = [ref.name for ref in list_models(resolve_paths(os.environ).models_dir)]
    return [n for n in names if n.startswith(incomplete)]


def complete_templates(incomplete: str) -> list[str]:
    """Shell completion for -T: built-in and saved template names."""
    from askgpt.runtime.store.settings import resolve_paths
    from askgpt.runtime.store.templates import TemplateStore

    names = TemplateStore(resolve_paths(os.environ).templates_dir).names()
    return [n for n in names if n.startswith(incomplete)]


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


def create_app(engine_factory: EngineFactory | None = None) -> typer.Typer:
    """Build the CLI. Tests pass a scripted ``engine_factory``; the default loads llama.cpp lazily."""
    app = typer.Typer(
        cls=DefaultCommandGroup,
        help=HELP,
        add_completion=True,
        no_args_is_help=False,
        rich_markup_mode=None,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        version: Annotated[bool | None, typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
    ) -> None:
        pass

    @app.command("ask")
    def ask_command(
        prompt: Annotated[list[str] | None, typer.Argument(
            help="The question or instruction; the words are joined by spaces.", metavar="PROMPT",
            show_default=False)] = None,
        model: Annotated[str | None, typer.Option(
            "-m", "--model", metavar="NAME|PATH", help="Model NAME or PATH to a .gguf file (default: $ASKGPT_MODEL, "
            "then config, then the built-in SmolLM2-135M-Instruct).", show_default=False,
            autocompletion=complete_models)] = None,
        system: Annotated[str | None, typer.Option(
            "-s", "--system", metavar="TEXT", help="System prompt: the task description. -s '' sends none.",
            show_default=False)] = None,
        files: Annotated[list[str] | None, typer.Option(
            "-f", "--file", metavar="FILE",
            help="A document to include before the instruction (repeatable; - is stdin).",
            show_default=False)] = None,
        images: Annotated[list[str] | None, typer.Option(
            "-i", "--image", metavar="IMAGE",
            help="An image to ask about: PNG, JPEG, WebP, GIF or BMP (repeatable; - is stdin).",
            show_default=False)] = None,
        ocr: Annotated[str, typer.Option(
            "--ocr", metavar="auto|on|off",
            help="Read text in images: auto = confident lines where text is found, on = also uncertain "
                 "lines, off = never.")] = "auto",
        image_mode: Annotated[str | None, typer.Option(
            "--image-mode", metavar="text|embed|both",
            help="How images reach the model: a text block of what the encoders found, embedding rows "
                 "projected into the model's input space, or both [default: text].",
            show_default=False)] = None,
        encoder: Annotated[str | None, typer.Option(
            "--encoder", metavar="NAME",
            help="The image encoder: auto (a CLIP encoder when one is set up, else the built-in one), "
                 "builtin, clip, or the name of one from `askgpt vision status` [default: auto].",
            show_default=False)] = None,
        mmproj: Annotated[str | None, typer.Option(
            "--mmproj", metavar="PATH",
            help="The model's own vision projector (a llama.cpp mmproj .gguf); by default the one "
                 "registered with the model or the one beside it.", show_default=False)] = None,
        endpoint: Annotated[str | None, typer.Option(
            "--endpoint", metavar="URL",
            help="Use a model served by an OpenAI-compatible engine (llama-server, vLLM, ollama, ...) "
                 "instead of a local one; -m names the served model [default: $ASKGPT_ENDPOINT, then "
                 "the config's endpoint].", show_default=False)] = None,
        examples: Annotated[list[str] | None, typer.Option(
            "-e", "--example", metavar="'IN => OUT'", help='A few-shot example "INPUT => OUTPUT" (repeatable).',
            show_default=False)] = None,
        examples_file: Annotated[str | None, typer.Option(
            "--examples", metavar="FILE",
            help='A JSONL file of few-shot examples: {"input": ..., "output": ...} per line.',
            show_default=False)] = None,
        strategy: Annotated[str, typer.Option(
            "--strategy", metavar="auto|stuff|retrieve|map-reduce|refine",
            help="How documents longer than the model reads well are used: auto picks (and says why), "
                 "stuff sends them whole, retrieve reads the parts that match the question, map-reduce "
                 "keeps the most distinctive sentences of every part (quoted after the answer), refine "
                 "carries an answer through the parts.")] = "auto",
        read_tokens: Annotated[int, typer.Option(
            "--read-tokens", metavar="N",
            help="Document tokens the model reads well at once; more goes through --strategy.")] = 1024,
        temperature: Annotated[float | None, typer.Option(
            "-t", "--temperature", min=0.0, metavar="T", help="Sampling temperature; 0 is greedy [default: 0.2].",
            show_default=False, callback=checked_option("temperature"))] = None,
        max_tokens: Annotated[int | None, typer.Option(
            "-n", "--max-tokens", min=1, metavar="N", help="Most tokens to generate [default: 512].",
            show_default=False)] = None,
        seed: Annotated[int | None, typer.Option(
            "--seed", min=0, metavar="N", help="Random seed, for repeatable sampling and example draws "
            "(--shots draws with seed 0 unless given).", show_default=False)] = None,
        labels: Annotated[str | None, typer.Option(
            "--labels", metavar="A,B,...|auto",
            help="Answer with one of these labels, chosen by their log-probabilities under the model "
                 "(auto: the examples' distinct outputs; --stats shows each label's probability).",
            show_default=False)] = None,
        calibrate: Annotated[bool, typer.Option(
            "--calibrate", help="With --labels: correct the model's bias toward some labels, measured on "
                                "content-free inputs under the same prompt (Calibrate Before Use).")] = False,
        shots: Annotated[int | None, typer.Option(
            "--shots", min=0, metavar="K",
            help="Draw K examples per input from all the examples given (--examples POOL, -e, -T) "
                 "instead of sending them all.", show_default=False)] = None,
        select: Annotated[str | None, typer.Option(
            "--select", metavar="random|similar|diverse",
            help="How --shots draws: the nearest examples (most similar last), label-balanced random ones, "
                 "or relevant ones spread over the pool [default: similar].", show_default=False)] = None,
        lookup: Annotated[int | None, typer.Option(
            "--lookup", min=0, metavar="N",
            help="Prompt-lookup decoding with greedy sampling (-t 0): guess up to N tokens from text that "
                 "came before and check them in one step; 0 turns it off [default: 0].",
            show_default=False, callback=checked_option("lookup_tokens"))] = None,
        ctx: Annotated[int | None, typer.Option(
            "--ctx", min=0, metavar="N",
            help="Context size in tokens; 0 = the model's training context [default: 4096].",
            show_default=False, callback=checked_option("ctx"))] = None,
        threads: Annotated[int | None, typer.Option(
            "--threads", min=1, metavar="N", help="CPU threads [default: the number of physical cores].",
            show_default=False, callback=checked_option("threads"))] = None,
        batch: Annotated[int | None, typer.Option(
            "--batch", min=1, metavar="N", help="Prompt tokens evaluated per step [default: 512].",
            show_default=False, callback=checked_option("batch"))] = None,
        gpu_layers: Annotated[int | None, typer.Option(
            "--gpu-layers", min=0, metavar="N",
            help="Layers to run on the GPU, 0 for none [default: all where llama.cpp was built with a GPU "
                 "backend, else 0].", show_default=False, callback=checked_option("gpu_layers"))] = None,
        kv_type: Annotated[str | None, typer.Option(
            "--kv-type", metavar="f16|q8_0|f32",
            help="Attention cache type; q8_0 halves its memory for long windows [default: f16].",
            show_default=False)] = None,
        template: Annotated[str | None, typer.Option(
            "-T", "--template", metavar="NAME",
            help="Use a saved task: its system prompt, examples, suffix, labels and shots (askgpt templates list).",
            show_default=False, autocompletion=complete_templates)] = None,
        json_object: Annotated[bool, typer.Option(
            "--json", help="Answer with a JSON object (generation is constrained by a grammar).")] = False,
        schema: Annotated[str | None, typer.Option(
            "--schema", metavar="FILE|JSON",
            help="""Answer with JSON matching this schema: a file, a JSON schema, or shorthand like """
                 """'{"name": "string", "tags": ["string"], "size": "small|large"}'.""",
            show_default=False)] = None,
        extract: Annotated[bool, typer.Option(
            "-x", "--extract", help="Print only the first fenced code block of the answer.")] = False,
        continue_last: Annotated[bool, typer.Option(
            "-c", "--continue", help="Continue the latest conversation (its earlier turns are sent too).")] = False,
        cid: Annotated[str | None, typer.Option(
            "--cid", metavar="ID", help="Continue conversation ID (see askgpt logs).", show_default=False)] = None,
        no_log: Annotated[bool, typer.Option(
            "--no-log", help="Do not keep this exchange in the conversation log.")] = False,
        no_cache: Annotated[bool, typer.Option(
            "--no-cache", help="Neither reuse nor keep evaluated prompt prefixes on disk "
                               "(see `askgpt cache info`).")] = False,
        no_stream: Annotated[bool, typer.Option(
            "--no-stream", help="Print the answer once it is complete.")] = False,
        stats: Annotated[bool, typer.Option(
            "--stats", help="Print token counts, speed and load time to stderr.")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress or warnings on stderr.")] = False,
        debug: Annotated[bool, typer.Option(
            "--debug", help="Show tracebacks and llama.cpp's own log lines (also ASKGPT_DEBUG=1).")] = False,
        show_prompt: Annotated[bool, typer.Option(
            "--show-prompt", help="Print the exact prompt the model would get (its control tokens too) "
                                  "and exit without generating.")] = False,
    ) -> None:
        """Ask the model (the default command). Stdin, when piped, is the document."""
        from askgpt.cli.ask import AskOptions, Streams, run_ask
        from askgpt.runtime.store.settings import load_settings

        messages = Messages(sys.stderr, quiet=quiet)
        debug = _debug_enabled(debug)
        with error_boundary(messages, debug=debug):
            opts = AskOptions(
                prompt_words=tuple(prompt or ()), model=model, endpoint=endpoint, system=system,
                files=tuple(files or ()), examples=tuple(examples or ()), examples_file=examples_file,
                images=tuple(images or ()), ocr=ocr, image_mode=image_mode, encoder=encoder, mmproj=mmproj,
                strategy=strategy, read_tokens=read_tokens,
                temperature=temperature, max_tokens=max_tokens, seed=seed, lookup=lookup, ctx=ctx,
                labels=labels, calibrate=calibrate, shots=shots, select=select,
                threads=threads, batch=batch, gpu_layers=gpu_layers, kv_type=kv_type,
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
            run_ask(opts, settings=load_settings(os.environ),
                    engine_factory=engine_factory or _default_engine_factory(),
                    streams=streams, messages=messages)

    models_app = typer.Typer(help="Manage models.", no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(models_app, name="models")

    @models_app.command("list")
    def models_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
        """The built-in model and the GGUF files in the models folder: size, architecture,
        parameters, quantization, context length, vision (from their headers only)."""
        from askgpt.cli.models import run_list

        messages = Messages(sys.stderr, quiet=False)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_list(messages, as_json=as_json)

    @models_app.command("add")
    def models_add(
        path: Annotated[str, typer.Argument(metavar="PATH|NAME",
                                            help="A .gguf file; with --endpoint, the name to give the served model.")],
        alias: Annotated[str | None, typer.Option("--alias", metavar="NAME", help="The name -m will take.",
                                                  show_default=False)] = None,
        mmproj: Annotated[str | None, typer.Option("--mmproj", metavar="PATH",
                                                   help="Its vision projector (mmproj .gguf).",
                                                   show_default=False)] = None,
        endpoint: Annotated[str | None, typer.Option(
            "--endpoint", metavar="URL", help="A model served by an OpenAI-compatible engine at URL.",
            show_default=False)] = None,
        remote_model: Annotated[str | None, typer.Option(
            "--remote-model", metavar="ID", help="The served model's id [default: the server's first].",
            show_default=False)] = None,
    ) -> None:
        """Give a GGUF file a name (the file stays where it is), or name a served model
        (`models add NAME --endpoint URL [--remote-model ID]`)."""
        from askgpt.cli.models import run_add, run_add_remote

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            if endpoint is not None:
                typer.echo(run_add_remote(path, endpoint, remote_model))
            elif alias is None:
                from askgpt.runtime.errors import UsageError

                raise UsageError("give --alias NAME", hint="or --endpoint URL to name a served model")
            else:
                typer.echo(run_add(path, alias, mmproj))

    @models_app.command("pull")
    def models_pull(
        repo: Annotated[str, typer.Argument(metavar="REPO", help="A Hugging Face repository, e.g. ORG/NAME-GGUF.")],
        filename: Annotated[str, typer.Argument(metavar="FILE", help="The .gguf file in it.")],
        revision: Annotated[str | None, typer.Option("--revision", metavar="REV", help="Branch, tag or commit.",
                                                     show_default=False)] = None,
        endpoint: Annotated[str | None, typer.Option("--endpoint", metavar="URL",
                                                     help="Another hub (default: $HF_ENDPOINT or huggingface.co).",
                                                     show_default=False)] = None,
    ) -> None:
        """Download a GGUF into the models folder (online; resumable; checksum checked)."""
        from askgpt.cli.models import run_pull

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            typer.echo(run_pull(repo, filename, endpoint=endpoint, revision=revision))

    @models_app.command("default")
    def models_default(name: Annotated[str, typer.Argument(metavar="NAME|PATH",
                                                           autocompletion=complete_models)]) -> None:
        """Make NAME the model askgpt uses when -m is not given (the config's model key)."""
        from askgpt.cli.models import run_default

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            typer.echo(run_default(name))

    @models_app.command("rm")
    def models_rm(
        name: Annotated[str, typer.Argument(metavar="NAME")],
        delete_file: Annotated[bool, typer.Option("--delete-file", help="Also delete the file.")] = False,
    ) -> None:
        """Forget an added model; its file is deleted only with --delete-file."""
        from askgpt.cli.models import run_rm

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            typer.echo(run_rm(name, delete_file=delete_file))

    @models_app.command("info")
    def models_info(
        model: Annotated[str, typer.Argument(metavar="NAME|PATH", help="A model name or .gguf path.",
                                             autocompletion=complete_models)],
        as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    ) -> None:
        """What a GGUF file holds, from its header (instant, even for a 10 GB file)."""
        from askgpt.cli.models import run_info

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_info(model, as_json=as_json)

    convert_app = typer.Typer(help="Convert Hugging Face checkpoints to GGUF, quantize models, measure what "
                                   "quantization cost, and export CLIP image encoders (ONNX, mmproj).",
                              no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(convert_app, name="convert")

    @convert_app.command("types")
    def convert_types() -> None:
        """The output types, with bits per weight."""
        from askgpt.cli.convert import run_types

        run_types()

    @convert_app.command("hf")
    def convert_hf(
        source: Annotated[str, typer.Argument(metavar="HF_FOLDER",
                                              help="A Hugging Face model folder: config.json, weights, tokenizer.")],
        output: Annotated[str, typer.Argument(metavar="OUTPUT.gguf", help="Where to write the result.")],
        out_type: Annotated[str, typer.Option("--type", metavar="TYPE",
                                              help="F32, F16, BF16 or a quantized type such as Q4_K_M "
                                                   "(see `askgpt convert types`).")] = "F16",
        trust_pickle: Annotated[bool, typer.Option(
            "--trust-pickle", help="Also read .bin/.pt weights (pickles; loaded with weights_only=True).")] = False,
        force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
    ) -> None:
        """Convert a Llama-family or Phi-3 checkpoint (safetensors) to GGUF, quantizing if asked."""
        from askgpt.cli.convert import run_hf

        messages = Messages(sys.stderr, quiet=quiet)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_hf(source, output, out_type, trust_pickle=trust_pickle, force=force, messages=messages)

    @convert_app.command("quantize")
    def convert_quantize(
        source: Annotated[str, typer.Argument(metavar="SOURCE.gguf", help="The GGUF to quantize.")],
        output: Annotated[str, typer.Argument(metavar="OUTPUT.gguf", help="Where to write the result.")],
        out_type: Annotated[str, typer.Option("--type", metavar="TYPE",
                                              help="Output type, e.g. Q4_K_M (see `askgpt convert types`).")]
        = "Q4_K_M",
        force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
    ) -> None:
        """Quantize a GGUF with llama.cpp's quantizer; the output appears only when complete and checked."""
        from askgpt.cli.convert import run_quantize
        from askgpt.runtime.store.settings import resolve_paths

        messages = Messages(sys.stderr, quiet=quiet)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_quantize(source, output, out_type, force=force, messages=messages,
                         trial_cache=resolve_paths(os.environ).cache_dir)

    @convert_app.command("report")
    def convert_report(
        model: Annotated[str, typer.Argument(metavar="MODEL.gguf", help="The model to measure.")],
        reference: Annotated[str, typer.Option("--reference", metavar="REF.gguf",
                                               help="The model it was made from (e.g. the F16 or F32 file).")],
        text: Annotated[str | None, typer.Option("--text", metavar="FILE",
                                                 help="Text to score on [default: askgpt's reference text].",
                                                 show_default=False)] = None,
        ctx: Annotated[int, typer.Option("--ctx", min=16, metavar="N", help="Window size in tokens.")] = 512,
        as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
    ) -> None:
        """Perplexity, KL divergence and top-1 agreement of MODEL against its reference."""
        from askgpt.cli.convert import run_report

        messages = Messages(sys.stderr, quiet=quiet)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_report(model, reference, text=text, ctx=ctx, as_json=as_json,
                       engine_factory=engine_factory or _default_engine_factory(), messages=messages)

    vision_app = typer.Typer(help="Image encoders: set up CLIP models for --image (once, with the clip "
                                  "extra), list them, remove them.", no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(vision_app, name="vision")

    def vision_setup(
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
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
        debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and the libraries' own logs.")]
        = False,
    ) -> None:
        """Export an open_clip model's image and text towers to ONNX (with int8 variants and a parity
        check) into askgpt's data folder; --image uses it from then on, without torch."""
        from askgpt.cli.vision import run_setup
        from askgpt.runtime.store.settings import load_settings

        messages = Messages(sys.stderr, quiet=quiet)
        debug = _debug_enabled(debug)
        with error_boundary(messages, debug=debug):
            run_setup(model, pretrained=pretrained, checkpoint=checkpoint, random=random,
                      model_config=model_config, name=name, int8=int8,
                      paths=load_settings(os.environ).paths, messages=messages, debug=debug,
                      trust_pickle=trust_pickle)

    vision_app.command("setup")(vision_setup)
    convert_app.command("clip")(vision_setup)

    @convert_app.command("mmproj")
    def convert_mmproj(
        model: ClipModelArg,
        output: Annotated[str, typer.Argument(metavar="OUTPUT.gguf", help="Where to write the mmproj file.")],
        for_model: Annotated[str, typer.Option(
            "--for", metavar="NAME|PATH", help="The language model the projector is fitted to.")],
        pretrained: PretrainedOpt = None,
        checkpoint: CheckpointOpt = None,
        trust_pickle: TrustPickleOpt = False,
        random: RandomOpt = False,
        model_config: ModelConfigOpt = None,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
        debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and the libraries' own logs.")]
        = False,
    ) -> None:
        """A CLIP image tower and askgpt's projector, fitted to --for's token embeddings, as an
        mmproj GGUF that llama.cpp's own tools (and --mmproj) load."""
        from pathlib import Path

        from askgpt.cli.convert import run_mmproj
        from askgpt.convert.clip import ClipSetupConfig
        from askgpt.runtime.store.settings import load_settings

        messages = Messages(sys.stderr, quiet=quiet)
        debug = _debug_enabled(debug)
        with error_boundary(messages, debug=debug):
            source = ClipSetupConfig(model, pretrained=pretrained, random=random, trust_pickle=trust_pickle,
                                     checkpoint=Path(checkpoint).expanduser() if checkpoint else None,
                                     model_config=Path(model_config).expanduser() if model_config else None)
            run_mmproj(source, for_model, output, settings=load_settings(os.environ),
                       engine_factory=engine_factory or _default_engine_factory(), messages=messages, debug=debug)

    @vision_app.command("status")
    def vision_status(
        as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
        verify: Annotated[bool, typer.Option("--verify", help="Recompute every file's SHA-256.")] = False,
    ) -> None:
        """The image encoders: sizes, hashes, parity, which tower is used, projector fits."""
        from askgpt.cli.vision import run_status
        from askgpt.runtime.store.settings import load_settings

        messages = Messages(sys.stderr, quiet=False)
        with error_boundary(messages, debug=_debug_enabled(False)):
            typer.echo(run_status(load_settings(os.environ).paths, as_json=as_json, verify=verify))

    @vision_app.command("rm")
    def vision_rm(name: Annotated[str, typer.Argument(metavar="NAME", help="A set-up encoder's name.")]) -> None:
        """Remove a set-up CLIP encoder (its folder in the data folder)."""
        from askgpt.cli.vision import run_rm
        from askgpt.runtime.store.settings import load_settings

        messages = Messages(sys.stderr, quiet=False)
        with error_boundary(messages, debug=_debug_enabled(False)):
            typer.echo(run_rm(name, load_settings(os.environ).paths))

    @app.command("chat")
    def chat_command(
        model: Annotated[str | None, typer.Option("-m", "--model", metavar="NAME|PATH", help="Model, as for ask.",
                                                  show_default=False, autocompletion=complete_models)] = None,
        endpoint: Annotated[str | None, typer.Option("--endpoint", metavar="URL",
                                                     help="A served model's server, as for ask.",
                                                     show_default=False)] = None,
        system: Annotated[str | None, typer.Option("-s", "--system", metavar="TEXT", help="System prompt.",
                                                   show_default=False)] = None,
        examples: Annotated[list[str] | None, typer.Option("-e", "--example", metavar="'IN => OUT'",
                                                           help="A few-shot example, repeatable.",
                                                           show_default=False)] = None,
        files: Annotated[list[str] | None, typer.Option("-f", "--file", metavar="FILE",
                                                        help="A document for the first question, repeatable.",
                                                        show_default=False)] = None,
        images: Annotated[list[str] | None, typer.Option("-i", "--image", metavar="IMAGE",
                                                         help="An image for the first question, repeatable.",
                                                         show_default=False)] = None,
        ctx: Annotated[int | None, typer.Option("--ctx", min=0, metavar="N", help="Context size, as for ask.",
                                                show_default=False, callback=checked_option("ctx"))] = None,
        max_tokens: Annotated[int | None, typer.Option("-n", "--max-tokens", min=1, metavar="N",
                                                       help="Most tokens per answer.", show_default=False)] = None,
        temperature: Annotated[float | None, typer.Option("-t", "--temperature", min=0.0, metavar="T",
                                                          help="Sampling temperature.", show_default=False,
                                                          callback=checked_option("temperature"))] = None,
        no_log: Annotated[bool, typer.Option("--no-log", help="Do not log the turns.")] = False,
    ) -> None:
        """Talk with the model: it loads once and keeps the conversation in its attention cache.
        Commands: /image, /file, /system, /example, /clear, /save, /stats, /model, /help, /exit."""
        from askgpt.cli.chat import ChatOptions, run_chat
        from askgpt.runtime.store.settings import load_settings

        messages = Messages(sys.stderr, quiet=False)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_chat(ChatOptions(model=model, endpoint=endpoint, system=system, examples=tuple(examples or ()),
                                 files=tuple(files or ()), images=tuple(images or ()), ctx=ctx,
                                 max_tokens=max_tokens, temperature=temperature, log=not no_log),
                     settings=load_settings(os.environ), engine_factory=engine_factory or _default_engine_factory(),
                     messages=messages)

    logs_app = typer.Typer(help="The conversation log: every exchange, kept in SQLite in the data folder.",
                           rich_markup_mode=None)
    app.add_typer(logs_app, name="logs")

    @logs_app.callback(invoke_without_command=True)
    def logs_list(
        ctx: typer.Context,
        count: Annotated[int, typer.Option("-n", "--count", min=1, metavar="N", help="How many.")] = 10,
        query: Annotated[str | None, typer.Option("-q", "--query", metavar="TEXT",
                                                  help="Only exchanges whose prompt or answer has these words.",
                                                  show_default=False)] = None,
        cid: Annotated[str | None, typer.Option("--cid", metavar="ID", help="Only this conversation.",
                                                show_default=False)] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print them as JSON.")] = False,
    ) -> None:
        """List recent exchanges, newest first (`askgpt logs show ID` for one whole)."""
        if ctx.invoked_subcommand is not None:
            return
        from askgpt.cli.logs import run_list
        from askgpt.runtime.store.settings import load_settings

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_list(load_settings(os.environ), limit=count, query=query, conversation=cid, as_json=as_json)

    @logs_app.command("show")
    def logs_show(
        exchange_id: Annotated[int, typer.Argument(metavar="ID", help="An exchange's number.")],
        as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    ) -> None:
        """One exchange whole: prompt, system prompt, examples, attachments, options, answer, timings."""
        from askgpt.cli.logs import run_show
        from askgpt.runtime.store.settings import load_settings

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_show(load_settings(os.environ), exchange_id, as_json=as_json)

    @logs_app.command("path")
    def logs_path() -> None:
        """Where the log database is."""
        from askgpt.runtime.store.settings import load_settings

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            typer.echo(str(load_settings(os.environ).paths.log_file))

    templates_app = typer.Typer(help="Saved prompt templates: a task description and few-shot examples, "
                                     "reused with askgpt -T NAME.", no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(templates_app, name="templates")

    def _store() -> Any:
        from askgpt.runtime.store.settings import resolve_paths
        from askgpt.runtime.store.templates import TemplateStore

        return TemplateStore(resolve_paths(os.environ).templates_dir)

    @templates_app.command("list")
    def templates_list(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
        """The built-in and saved templates."""
        from askgpt.cli.templates import run_list

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_list(_store(), as_json=as_json)

    @templates_app.command("show")
    def templates_show(
        name: Annotated[str, typer.Argument(metavar="NAME")],
        as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    ) -> None:
        """One template whole."""
        from askgpt.cli.templates import run_show

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_show(_store(), name, as_json=as_json)

    @templates_app.command("save")
    def templates_save(
        name: Annotated[str, typer.Argument(metavar="NAME", help="lowercase letters, digits, - and _")],
        system: Annotated[str | None, typer.Option("-s", "--system", metavar="TEXT",
                                                   help="The task description.", show_default=False)] = None,
        examples: Annotated[list[str] | None, typer.Option("-e", "--example", metavar="'IN => OUT'",
                                                           help="A few-shot example, repeatable.",
                                                           show_default=False)] = None,
        examples_file: Annotated[str | None, typer.Option("--examples", metavar="FILE",
                                                          help="A JSONL file of {input, output} examples.",
                                                          show_default=False)] = None,
        suffix: Annotated[str | None, typer.Option("--suffix", metavar="TEXT",
                                                   help="Appended to the question, e.g. 'Answer in one word.'",
                                                   show_default=False)] = None,
        labels: Annotated[str | None, typer.Option(
            "--labels", metavar="A,B,...|auto", help="The answer is one of these labels (auto: the examples' "
            "outputs, resolved now).", show_default=False)] = None,
        shots: Annotated[int | None, typer.Option(
            "--shots", min=0, metavar="K", help="Draw K of the examples per input instead of sending all.",
            show_default=False)] = None,
        select: Annotated[str | None, typer.Option(
            "--select", metavar="random|similar|diverse", help="How --shots draws [default: similar].",
            show_default=False)] = None,
    ) -> None:
        """Save (or replace) template NAME."""
        from askgpt.cli.templates import run_save

        messages = Messages(sys.stderr, quiet=False)
        with error_boundary(messages, debug=_debug_enabled(False)):
            path = run_save(_store(), name, system=system, examples=tuple(examples or ()),
                            examples_file=examples_file, suffix=suffix, labels=labels, shots=shots, select=select,
                            notify=messages.warn)
            typer.echo(f"saved {name} ({path})")

    @templates_app.command("edit")
    def templates_edit(name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
        """Open template NAME's file in $VISUAL or $EDITOR (a built-in one is copied first)."""
        from askgpt.cli.templates import run_edit

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
            saved = run_edit(_store(), name, editor)
            typer.echo(f"saved {name} ({saved})" if saved is not None else f"{name} is unchanged; nothing was saved")

    @templates_app.command("rm")
    def templates_rm(name: Annotated[str, typer.Argument(metavar="NAME")]) -> None:
        """Delete saved template NAME (built-in ones stay)."""
        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            _store().remove(name)
            typer.echo(f"removed {name}")

    config_app = typer.Typer(help="The config file: where it is, every effective value, and changes to it.",
                             no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(config_app, name="config")

    @config_app.command("path")
    def config_path() -> None:
        """Where the config file is (it need not exist)."""
        from askgpt.runtime.store.settings import resolve_paths

        typer.echo(str(resolve_paths(os.environ).config_file))

    @config_app.command("show")
    def config_show(as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False) -> None:
        """Every key's effective value and where it comes from: environment, config file or default."""
        from askgpt.cli.config import environ, run_show
        from askgpt.runtime.store.settings import resolve_paths

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_show(resolve_paths(os.environ), environ(), as_json=as_json)

    # A VALUE such as -5 is a value to check, not an unknown option.
    @config_app.command("set", context_settings={"ignore_unknown_options": True})
    def config_set(
        key: Annotated[str, typer.Argument(metavar="KEY", help="A config key (askgpt config show lists them).")],
        value: Annotated[str, typer.Argument(metavar="VALUE", help="Its new value, checked before it is written.")],
    ) -> None:
        """Set KEY to VALUE in the config file."""
        from askgpt.cli.config import run_set
        from askgpt.runtime.store.settings import resolve_paths

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            typer.echo(run_set(resolve_paths(os.environ), key, value))

    @config_app.command("unset")
    def config_unset(key: Annotated[str, typer.Argument(metavar="KEY", help="A config key.")]) -> None:
        """Remove KEY from the config file (its default applies again)."""
        from askgpt.cli.config import run_unset
        from askgpt.runtime.store.settings import resolve_paths

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            typer.echo(run_unset(resolve_paths(os.environ), key))

    @config_app.command("edit")
    def config_edit() -> None:
        """Open the config file in $VISUAL or $EDITOR, then check it."""
        from askgpt.cli.config import environ, run_edit
        from askgpt.runtime.store.settings import resolve_paths

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_edit(resolve_paths(os.environ), environ())

    cache_app = typer.Typer(help="The on-disk cache of evaluated prompt prefixes: a second question about the "
                                 "same document starts at once.", no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(cache_app, name="cache")

    @cache_app.command("info")
    def cache_info(
        as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
    ) -> None:
        """Where the cache is, its size and bound, and the prompts it holds."""
        from askgpt.cli.cache import run_info
        from askgpt.runtime.store.settings import load_settings

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            run_info(load_settings(os.environ), as_json=as_json)

    @cache_app.command("clear")
    def cache_clear() -> None:
        """Delete every cached prefix."""
        from askgpt.cli.cache import run_clear
        from askgpt.runtime.store.settings import load_settings

        with error_boundary(Messages(sys.stderr, quiet=False), debug=_debug_enabled(False)):
            typer.echo(run_clear(load_settings(os.environ)))

    bench_app = typer.Typer(help="Measure askgpt on this machine.", no_args_is_help=True, rich_markup_mode=None)
    app.add_typer(bench_app, name="bench")

    @bench_app.command("speed")
    def bench_speed(
        model: Annotated[str | None, typer.Option("-m", "--model", metavar="NAME|PATH",
                                                  help="Model to measure [default: as for ask].")] = None,
        ctx: Annotated[int, typer.Option("--ctx", min=256, metavar="N", help="Context window.")] = 2048,
        rounds: Annotated[int, typer.Option("--rounds", min=1, help="Interleaved rounds.")] = 3,
        n_decode: Annotated[int, typer.Option("-n", "--tokens", min=8, metavar="N",
                                              help="Tokens to generate per round.")] = 128,
        as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
    ) -> None:
        """Prefill and decode tokens/s through askgpt against raw llama-cpp-python, interleaved."""
        from askgpt.cli.bench import run_speed_command

        messages = Messages(sys.stderr, quiet=quiet)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_speed_command(model=model, ctx=ctx, rounds=rounds, n_decode=n_decode, as_json=as_json,
                              engine_factory=engine_factory or _default_engine_factory(), messages=messages)

    @bench_app.command("startup")
    def bench_startup(
        model: Annotated[str | None, typer.Option("-m", "--model", metavar="NAME|PATH",
                                                  help="Model to answer with [default: as for ask].")] = None,
        ctx: Annotated[int, typer.Option("--ctx", min=256, metavar="N", help="Context window of both.")] = 4096,
        rounds: Annotated[int, typer.Option("--rounds", min=1, help="Interleaved rounds.")] = 7,
        as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
    ) -> None:
        """Whole-process times of --help, --version and a one-token answer, against a bare
        llama-cpp-python script answering the same message."""
        from askgpt.cli.bench import run_startup_command

        messages = Messages(sys.stderr, quiet=quiet)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_startup_command(model=model, ctx=ctx, rounds=rounds, as_json=as_json,
                                engine_factory=engine_factory or _default_engine_factory(), messages=messages)

    @bench_app.command("needle")
    def bench_needle(
        model: Annotated[str | None, typer.Option("-m", "--model", metavar="NAME|PATH",
                                                  help="Model to measure [default: as for ask].")] = None,
        sizes: Annotated[str, typer.Option("--sizes", metavar="LIST",
                                           help="Input sizes in tokens (k = 1,000).")] = "2k,8k,32k,128k",
        depths: Annotated[str, typer.Option("--depths", metavar="LIST",
                                            help="Needle depths in %.")] = "0,10,20,30,40,50,60,70,80,90,100",
        seeds: Annotated[int, typer.Option("--seeds", min=1, help="Haystacks per cell.")] = 2,
        fillers: Annotated[str, typer.Option("--filler", metavar="LIST",
                                             help="synthetic and/or prose (the stdlib's docstrings).")]
        = "synthetic,prose",
        ctx: Annotated[int, typer.Option("--ctx", min=256, metavar="N", help="Context size.")] = 4096,
        read_tokens: Annotated[int, typer.Option("--read-tokens", metavar="N",
                                                 help="As for ask.")] = 1024,
        as_json: Annotated[bool, typer.Option("--json", help="Print every cell as JSON.")] = False,
        plot: Annotated[str | None, typer.Option("--plot", metavar="PNG",
                                                 help="Draw the grid as a heatmap (needs matplotlib).")] = None,
    ) -> None:
        """Needle in a haystack: recall of a planted fact by input size and depth, through --strategy auto."""
        from askgpt.cli.bench import run_needle_command

        messages = Messages(sys.stderr, quiet=False)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_needle_command(model=model, sizes=sizes, depths=depths, seeds=seeds, fillers=fillers, ctx=ctx,
                               read_tokens=read_tokens, as_json=as_json, plot=plot,
                               engine_factory=engine_factory or _default_engine_factory(), messages=messages)

    @bench_app.command("icl")
    def bench_icl(
        models: Annotated[list[str] | None, typer.Option("-m", "--model", metavar="NAME|PATH",
                                                         help="A model to measure, repeatable [default: as for "
                                                              "ask].", show_default=False)] = None,
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
        calibrate: Annotated[bool, typer.Option("--calibrate",
                                                help="Also measure label tasks calibrated.")] = False,
        ctx: Annotated[int, typer.Option("--ctx", min=256, metavar="N", help="Context window.")] = 2048,
        threads: Annotated[int, typer.Option("--threads", min=1, metavar="N",
                                             help="CPU threads (short inputs gain little from more, and lose "
                                                  "much on a busy machine).")] = 1,
        as_json: Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")] = False,
        plot: Annotated[str | None, typer.Option("--plot", metavar="PNG",
                                                 help="Draw accuracy against k (needs matplotlib).")] = None,
        save_template: Annotated[str | None, typer.Option("--save-template", metavar="NAME",
                                                          help="Save the best setting for the task as a "
                                                               "template.", show_default=False)] = None,
        quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")] = False,
    ) -> None:
        """In-context learning: accuracy against the number of examples, per task, with 95% intervals."""
        from askgpt.cli.bench import run_icl_command

        messages = Messages(sys.stderr, quiet=quiet)
        with error_boundary(messages, debug=_debug_enabled(False)):
            run_icl_command(models=list(models or ()), tasks=tasks, task_files=list(task_files or ()),
                            system=system, shots=shots, seeds=seeds, select=select, calibrate=calibrate, ctx=ctx,
                            threads=threads, as_json=as_json, plot=plot, save_template=save_template,
                            engine_factory=engine_factory or _default_engine_factory(), messages=messages)

    return app


def main() -> None:
    create_app()(prog_name="askgpt")
