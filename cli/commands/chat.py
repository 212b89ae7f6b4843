"""`askgpt chat`: its options; cli/chat.py runs the conversation."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from askgpt.cli.options import (
    ChatEndpointOpt,
    ChatModelOpt,
    CiteOpt,
    ExamplesFileOpt,
    JsonObjectOpt,
    RetrievalOpt,
    SchemaOpt,
    ShortExampleOpt,
    StatsOpt,
    TemplateOpt,
    checked_option,
    choice_value,
)
from askgpt.cli.state import state
from askgpt.cli.terminal.render import Messages


def chat_command(
    ctx: typer.Context,
    model: ChatModelOpt = None,
    endpoint: ChatEndpointOpt = None,
    system: Annotated[str | None, typer.Option("-s", "--system", metavar="TEXT", help="System prompt.",
                                               show_default=False)] = None,
    template: TemplateOpt = None,
    examples: ShortExampleOpt = None,
    examples_file: ExamplesFileOpt = None,
    files: Annotated[list[str] | None, typer.Option("-f", "--file", metavar="FILE",
                                                    help="A document for the first question, repeatable.",
                                                    show_default=False)] = None,
    images: Annotated[list[str] | None, typer.Option("-i", "--image", metavar="IMAGE",
                                                     help="An image for the first question, repeatable.",
                                                     show_default=False)] = None,
    ctx_size: Annotated[int | None, typer.Option("--ctx", min=0, metavar="N", help="Context size, as for ask.",
                                                 show_default=False, callback=checked_option("ctx"))] = None,
    max_tokens: Annotated[int | None, typer.Option("-n", "--max-tokens", min=1, metavar="N",
                                                   help="Most tokens per answer.", show_default=False)] = None,
    temperature: Annotated[float | None, typer.Option("-t", "--temperature", min=0.0, metavar="T",
                                                      help="Sampling temperature.", show_default=False,
                                                      callback=checked_option("temperature"))] = None,
    seed: Annotated[int | None, typer.Option("--seed", min=0, metavar="N", help="Random seed, for repeatable sampling.",
                                             show_default=False)] = None,
    json_object: JsonObjectOpt = False,
    schema: SchemaOpt = None,
    retrieval: RetrievalOpt = None,
    cite: CiteOpt = None,
    stats: StatsOpt = False,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not log the turns.")] = False,
) -> None:
    """Talk with the model: it loads once and keeps the conversation in its attention cache.
    Commands: /image, /file, /system, /example, /clear, /save, /stats, /model, /help, /exit."""
    from askgpt.cli.chat import run_chat
    from askgpt.session import ChatOptions

    run = state(ctx)
    run_chat(ChatOptions(model=model, endpoint=endpoint, system=system, examples=tuple(examples or ()),
                         files=tuple(files or ()), images=tuple(images or ()), ctx=ctx_size,
                         max_tokens=max_tokens, temperature=temperature, log=not no_log,
                         template=template, seed=seed, examples_file=examples_file, stats=stats, schema=schema,
                         json_object=json_object, retrieval=choice_value(retrieval), cite=cite),
             settings=run.settings, engine_factory=run.engine_factory, messages=Messages(sys.stderr, quiet=False))
