"""Options declared once, as ``Annotated`` aliases, for every command that takes them;
closed choices typed by the runtime's Enums; and the shell completion of their values.

An option whose help differs between commands (``-m`` says "Model, as for ask." in chat)
has one alias per wording. Defaults stay in the commands' signatures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Annotated, Any, TypeVar

import typer

from askgpt.cli.boundary import click_module, usage_error
from askgpt.runtime.choices import choice as parse_choice
from askgpt.runtime.documents.strategies import Retrieval, Strategy
from askgpt.runtime.engine.kv import KvType
from askgpt.runtime.errors import AskgptError, UsageError
from askgpt.runtime.icl.selection import Select
from askgpt.runtime.prompting.image_options import ImageMode, OcrMode
from askgpt.runtime.store.settings import toml_value, value_problem

T = TypeVar("T")

class EnumChoice(click_module().types.ParamType):  # type: ignore[misc]
    """One of an Enum's values, refused as askgpt refuses a bad value anywhere:
    ``--strategy must be one of auto|stuff|..., not 'guess'``, exit 2. Completes to the values."""

    name = "choice"

    def __init__(self, enum: type[Enum], option: str, *, case_sensitive: bool = False) -> None:
        self.enum = enum
        self.choices = tuple(str(member.value) for member in enum)
        self.option = option
        self.case_sensitive = case_sensitive

    def _key(self, text: str) -> str:
        return text if self.case_sensitive else text.lower()

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value.value if isinstance(value, Enum) else value)  # an Enum: a default
        try:
            return str(parse_choice(self.enum, text, self.option, case_sensitive=self.case_sensitive).value)
        except UsageError as exc:  # Typer turns the value returned into the Enum member
            raise usage_error(exc.message) from None

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return "|".join(self.choices)

    def shell_complete(self, ctx: Any, param: Any, incomplete: str) -> list[Any]:
        item = click_module().shell_completion.CompletionItem
        return [item(known) for known in self.choices if self._key(known).startswith(self._key(incomplete))]


def choice(enum: type[Enum], option: str, *, case_sensitive: bool = False) -> dict[str, Any]:
    """typer.Option's arguments for a closed choice: its type, and its values as the metavar."""
    return {"click_type": EnumChoice(enum, option, case_sensitive=case_sensitive),
            "metavar": "|".join(str(member.value) for member in enum)}


def checked_option(key: str) -> Callable[[T | None], T | None]:
    """A typer callback checking an option against config key ``key``'s entry in the one
    table (settings.KEYS): ``-t nan``, ``-t inf`` and out-of-range values are refused as
    they are in the config file."""

    def check(value: T | None) -> T | None:
        if value is not None and (problem := value_problem(key, value)) is not None:
            raise typer.BadParameter(f"{problem}, not {toml_value(value)}")
        return value

    return check


def _starting(names: Iterable[str], incomplete: str) -> list[str]:
    return [name for name in dict.fromkeys(names) if name.startswith(incomplete)]


def complete_models(incomplete: str) -> list[str]:
    """Shell completion for -m: every model askgpt knows by name (built-in, in the models
    folder, added, found in other tools' folders); headers are not read."""
    from askgpt.runtime.models.discovery import Registry, discover
    from askgpt.runtime.models.registry import list_models
    from askgpt.runtime.store.settings import resolve_paths

    paths = resolve_paths(os.environ)
    sources: list[Callable[[], Iterable[str]]] = [
        lambda: (ref.name for ref in list_models(paths.models_dir)),
        lambda: (found.name for found in Registry(paths.data_dir).entries()),
        lambda: (found.name for found in discover(os.environ)),
    ]
    names: list[str] = []
    for source in sources:
        try:  # a broken source (an unreadable models.json) leaves the others
            names += source()
        except (AskgptError, OSError, ValueError):
            continue
    return _starting(names, incomplete)


def complete_catalog(incomplete: str) -> list[str]:
    """Shell completion for `models pull`: the catalog's names."""
    from askgpt.runtime.models.catalog import load_catalog

    try:
        return _starting(load_catalog().names(), incomplete)
    except AskgptError:
        return []


def complete_templates(incomplete: str) -> list[str]:
    """Shell completion for -T: built-in and saved template names."""
    from askgpt.runtime.store.settings import resolve_paths
    from askgpt.runtime.store.templates import TemplateStore

    return _starting(TemplateStore(resolve_paths(os.environ).templates_dir).names(), incomplete)


# --- what to ask with ------------------------------------------------------------------------------
ModelOpt = Annotated[str | None, typer.Option(
    "-m", "--model", metavar="NAME|PATH", help="Model NAME or PATH to a .gguf file (default: $ASKGPT_MODEL, "
    "then config, then the built-in SmolLM2-135M-Instruct).", show_default=False, autocompletion=complete_models)]
ChatModelOpt = Annotated[str | None, typer.Option(
    "-m", "--model", metavar="NAME|PATH", help="Model, as for ask.", show_default=False,
    autocompletion=complete_models)]
MeasuredModelOpt = Annotated[str | None, typer.Option(
    "-m", "--model", metavar="NAME|PATH", help="Model to measure [default: as for ask].",
    autocompletion=complete_models)]
EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint", metavar="URL",
    help="Use a model served by an OpenAI-compatible engine (llama-server, vLLM, ollama, ...) "
         "instead of a local one; -m names the served model [default: $ASKGPT_ENDPOINT, then "
         "the config's endpoint].", show_default=False)]
ChatEndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint", metavar="URL", help="A served model's server, as for ask.", show_default=False)]
MmprojOpt = Annotated[str | None, typer.Option(
    "--mmproj", metavar="PATH",
    help="The model's own vision projector (a llama.cpp mmproj .gguf); by default the one "
         "registered with the model or the one beside it.", show_default=False)]

# --- the prompt --------------------------------------------------------------------------------------
SystemOpt = Annotated[str | None, typer.Option(
    "-s", "--system", metavar="TEXT", help="System prompt: the task description. -s '' sends none.",
    show_default=False)]
ExampleOpt = Annotated[list[str] | None, typer.Option(
    "-e", "--example", metavar="'IN => OUT'", help='A few-shot example "INPUT => OUTPUT" (repeatable).',
    show_default=False)]
ShortExampleOpt = Annotated[list[str] | None, typer.Option(
    "-e", "--example", metavar="'IN => OUT'", help="A few-shot example, repeatable.", show_default=False)]
ExamplesFileOpt = Annotated[str | None, typer.Option(
    "--examples", metavar="FILE", help='A JSONL file of few-shot examples: {"input": ..., "output": ...} per line.',
    show_default=False)]
TemplateOpt = Annotated[str | None, typer.Option(
    "-T", "--template", metavar="NAME",
    help="Use a saved task: its system prompt, examples, suffix, labels and shots (askgpt templates list).",
    show_default=False, autocompletion=complete_templates)]
JsonObjectOpt = Annotated[bool, typer.Option(
    "--json", help="Answer with a JSON object (generation is constrained by a grammar).")]
SchemaOpt = Annotated[str | None, typer.Option(
    "--schema", metavar="FILE|JSON",
    help="""Answer with JSON matching this schema: a file, a JSON schema, or shorthand like """
         """'{"name": "string", "tags": ["string"], "size": "small|large"}'.""",
    show_default=False)]

# --- inputs --------------------------------------------------------------------------------------------
FileOpt = Annotated[list[str] | None, typer.Option(
    "-f", "--file", metavar="FILE", help="A document to include before the instruction (repeatable; - is stdin).",
    show_default=False)]
ImageOpt = Annotated[list[str] | None, typer.Option(
    "-i", "--image", metavar="IMAGE",
    help="An image to ask about: PNG, JPEG, WebP, GIF or BMP (repeatable; - is stdin).", show_default=False)]
OcrOpt = Annotated[OcrMode, typer.Option(
    "--ocr", **choice(OcrMode, "--ocr"),
    help="Read text in images: auto = confident lines where text is found, on = also uncertain "
         "lines, off = never.")]
ImageModeOpt = Annotated[ImageMode | None, typer.Option(
    "--image-mode", **choice(ImageMode, "--image-mode"),
    help="How images reach the model: a text block of what the encoders found, embedding rows "
         "projected into the model's input space, or both [default: text].", show_default=False)]
EncoderOpt = Annotated[str | None, typer.Option(
    "--encoder", metavar="NAME",
    help="The image encoder: auto (a CLIP encoder when one is set up, else the built-in one), "
         "builtin, clip, or the name of one from `askgpt vision status` [default: auto].", show_default=False)]
StrategyOpt = Annotated[Strategy, typer.Option(
    "--strategy", **choice(Strategy, "--strategy"),
    help="How documents longer than the model reads well are used: auto picks (and says why), "
         "stuff sends them whole, retrieve reads the parts that match the question, map-reduce "
         "keeps the most distinctive sentences of every part (quoted after the answer), refine "
         "carries an answer through the parts.")]
ReadTokensOpt = Annotated[int, typer.Option(
    "--read-tokens", metavar="N", help="Document tokens the model reads well at once; more goes through --strategy.")]
RetrievalOpt = Annotated[Retrieval | None, typer.Option(
    "--retrieval", **choice(Retrieval, "--retrieval"),
    help="How a question's evidence is found in long documents: bm25 by its words, semantic by its "
         "meaning (sentence embeddings), hybrid by both [default: the config's retrieval, else hybrid "
         "where the embedding model is present, else bm25].", show_default=False)]
CiteOpt = Annotated[bool | None, typer.Option(
    "--cite/--no-cite",
    help="After the answer, list under \"Sources:\" the parts of the documents the model was given, "
         "with their lines: on stdout when it is a terminal, else on stderr [default: the config's "
         "cite, else on].", show_default=False)]

# --- sampling and in-context learning ------------------------------------------------------------------
TemperatureOpt = Annotated[float | None, typer.Option(
    "-t", "--temperature", min=0.0, metavar="T", help="Sampling temperature; 0 is greedy [default: 0.2].",
    show_default=False, callback=checked_option("temperature"))]
MaxTokensOpt = Annotated[int | None, typer.Option(
    "-n", "--max-tokens", min=1, metavar="N", help="Most tokens to generate [default: 512].", show_default=False)]
SeedOpt = Annotated[int | None, typer.Option(
    "--seed", min=0, metavar="N", help="Random seed, for repeatable sampling and example draws "
    "(--shots draws with seed 0 unless given).", show_default=False)]
LabelsOpt = Annotated[str | None, typer.Option(
    "--labels", metavar="A,B,...|auto",
    help="Answer with one of these labels, chosen by their log-probabilities under the model "
         "(auto: the examples' distinct outputs; --stats shows each label's probability).", show_default=False)]
CalibrateOpt = Annotated[bool, typer.Option(
    "--calibrate", help="With --labels: correct the model's bias toward some labels, measured on "
                        "content-free inputs under the same prompt (Calibrate Before Use).")]
ShotsOpt = Annotated[int | None, typer.Option(
    "--shots", min=0, metavar="K", help="Draw K examples per input from all the examples given (--examples POOL, "
    "-e, -T) instead of sending them all.", show_default=False)]
SelectOpt = Annotated[Select | None, typer.Option(
    "--select", **choice(Select, "--select"),
    help="How --shots draws: the nearest examples (most similar last), label-balanced random ones, "
         "or relevant ones spread over the pool [default: similar].", show_default=False)]
LookupOpt = Annotated[int | None, typer.Option(
    "--lookup", min=0, metavar="N",
    help="Prompt-lookup decoding with greedy sampling (-t 0): guess up to N tokens from text that "
         "came before and check them in one step; 0 turns it off [default: 0].",
    show_default=False, callback=checked_option("lookup_tokens"))]

# --- the engine ------------------------------------------------------------------------------------------
CtxOpt = Annotated[int | None, typer.Option(
    "--ctx", min=0, metavar="N", help="Context size in tokens; 0 = the model's training context [default: 4096].",
    show_default=False, callback=checked_option("ctx"))]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", min=1, metavar="N", help="CPU threads [default: the number of physical cores].",
    show_default=False, callback=checked_option("threads"))]
BatchOpt = Annotated[int | None, typer.Option(
    "--batch", min=1, metavar="N", help="Prompt tokens evaluated per step [default: 512].",
    show_default=False, callback=checked_option("batch"))]
GpuLayersOpt = Annotated[int | None, typer.Option(
    "--gpu-layers", min=0, metavar="N",
    help="Layers to run on the GPU, 0 for none [default: all where llama.cpp was built with a GPU "
         "backend, else 0].", show_default=False, callback=checked_option("gpu_layers"))]
KvTypeOpt = Annotated[KvType | None, typer.Option(
    "--kv-type", **choice(KvType, "--kv-type", case_sensitive=True),
    help="Attention cache type; q8_0 halves its memory for long windows [default: f16].", show_default=False)]
BenchCtxOpt = Annotated[int, typer.Option("--ctx", min=256, metavar="N", help="Context window.")]

# --- output ------------------------------------------------------------------------------------------------
StatsOpt = Annotated[bool, typer.Option("--stats", help="Print token counts, speed and load time to stderr.")]
NoLogOpt = Annotated[bool, typer.Option("--no-log", help="Do not keep this exchange in the conversation log.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No progress on stderr.")]
DebugLibrariesOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and the libraries' own logs.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print as JSON.")]
FiguresJsonOpt = Annotated[bool, typer.Option("--json", help="Print the figures as JSON.")]
RoundsOpt = Annotated[int, typer.Option("--rounds", min=1, help="Interleaved rounds.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")]
OutputGgufArg = Annotated[str, typer.Argument(metavar="OUTPUT.gguf", help="Where to write the result.")]


def choice_value(choice_made: Enum | None) -> str | None:
    """An Enum-typed option's value as the string the option objects take."""
    return None if choice_made is None else str(choice_made.value)
