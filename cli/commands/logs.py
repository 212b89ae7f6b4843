"""`askgpt logs [show|path]`: the conversation log (runtime.store.log), listed, searched and shown."""

from __future__ import annotations

import datetime
import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from askgpt.cli.boundary import Commands
from askgpt.cli.state import state
from askgpt.cli.terminal.text import neutralize

if TYPE_CHECKING:
    from askgpt.runtime.prompting.request import Turn
    from askgpt.runtime.store.log import ConversationLog, Exchange

app = Commands(help="The conversation log: every exchange, kept in SQLite in the data folder.", no_args_is_help=False)


@app.callback(invoke_without_command=True)
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
    from askgpt.runtime.errors import InputNotFoundError
    from askgpt.runtime.store.log import ConversationLog

    log = ConversationLog(state(ctx).settings.paths.log_file)
    found = log.recent(limit=count, query=query, conversation=cid)
    # As `askgpt --cid` says: an ID that is not in the log is an error (a search that finds
    # nothing in one that is, is not).
    if cid and not found and not log.conversation(cid):
        raise InputNotFoundError(f"no conversation {cid!r} in the log", hint="askgpt logs lists them")
    if as_json:
        json.dump([e.to_json() for e in found], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    for e in found:
        line = (f"{e.id:>5}  {_when(e.created)}  {e.conversation_id}  {e.model}  "
                f"{_one_line(e.prompt, 40)}  ->  {_one_line(e.answer, 50)}")
        print(neutralize(line) if sys.stdout.isatty() else line)


@app.command("show")
def logs_show(
    ctx: typer.Context,
    exchange_id: Annotated[int, typer.Argument(metavar="ID", help="An exchange's number.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
) -> None:
    """One exchange whole: prompt, system prompt, examples, attachments, options, answer, timings."""
    from askgpt.runtime.errors import InputNotFoundError
    from askgpt.runtime.store.log import ConversationLog

    log = ConversationLog(state(ctx).settings.paths.log_file)
    found = log.get(exchange_id)
    if found is None:
        raise InputNotFoundError(f"no exchange {exchange_id} in the log", hint="askgpt logs lists them")
    replayed = replayed_turns(log, found)
    if as_json:
        data = found.to_json()
        data["replayed_turns"] = [{"user": t.user, "assistant": t.assistant} for t in replayed]
        json.dump(data, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    text = format_exchange(found, replayed)
    print(neutralize(text) if sys.stdout.isatty() else text)


@app.command("path")
def logs_path(ctx: typer.Context) -> None:
    """Where the log database is."""
    typer.echo(str(state(ctx).settings.paths.log_file))


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def replayed_turns(log: ConversationLog, e: Exchange) -> tuple[Turn, ...]:
    """The earlier turns the model got with ``e`` (-c/--cid), as it got them: the latest
    ``replayed_turns`` (an option recorded since askgpt logged it) of its conversation."""
    from askgpt.conversation import turns_of

    count = e.options.get("replayed_turns")
    if not isinstance(count, int) or count <= 0:
        return ()
    earlier = [x for x in log.conversation(e.conversation_id) if x.id is not None and e.id is not None and x.id < e.id]
    return turns_of(earlier)[-count:]


def format_exchange(e: Exchange, replayed: tuple[Turn, ...] = ()) -> str:
    lines = [f"exchange {e.id}  {_when(e.created)}  conversation {e.conversation_id}",
             f"model: {e.model} ({e.model_path}, sha256 {e.model_sha256[:16]})"]
    if e.system:
        lines.append(f"system: {e.system}")
    lines += [f"example: {i} => {o}" for i, o in e.examples]
    lines += [f"document: {d.source} ({d.size:,} bytes, sha256 {d.sha256[:16]})" for d in e.documents]
    lines += [f"image: {i.source} ({i.size:,} bytes, sha256 {i.sha256[:16]})" for i in e.images]
    lines.append(f"options: {json.dumps(e.options, sort_keys=True)}")
    if e.answer_tokens is not None:
        lines.append(f"tokens: prompt {e.prompt_tokens}, answer {e.answer_tokens} | "
                     f"seconds: prompt {e.prompt_seconds:.2f}, answer {e.answer_seconds:.2f} | stop: {e.stop_reason}")
    if replayed:
        lines.append(f"replayed: the {len(replayed)} earlier turn(s) below, sent before the question")
        for t in replayed:
            lines += ["", f"> {t.user}", "", t.assistant]
        lines += ["", "(this exchange)"]
    lines += ["", f"> {e.prompt}", "", e.answer]
    return "\n".join(lines)
