"""`askgpt logs`: the conversation log (runtime.store.log), listed, searched and shown."""

from __future__ import annotations

import datetime
import json
import sys

from askgpt.cli.render import neutralize
from askgpt.conversation import turns_of
from askgpt.runtime.errors import InputNotFoundError
from askgpt.runtime.prompting.request import Turn
from askgpt.runtime.store.log import ConversationLog, Exchange
from askgpt.runtime.store.settings import Settings


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def run_list(settings: Settings, *, limit: int, query: str | None, conversation: str | None,
             as_json: bool) -> None:
    log = ConversationLog(settings.paths.log_file)
    found = log.recent(limit=limit, query=query, conversation=conversation)
    # As `askgpt --cid` says: an ID that is not in the log is an error (a search that finds
    # nothing in one that is, is not).
    if conversation and not found and not log.conversation(conversation):
        raise InputNotFoundError(f"no conversation {conversation!r} in the log", hint="askgpt logs lists them")
    if as_json:
        json.dump([e.to_json() for e in found], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    for e in found:
        line = (f"{e.id:>5}  {_when(e.created)}  {e.conversation_id}  {e.model}  "
                f"{_one_line(e.prompt, 40)}  ->  {_one_line(e.answer, 50)}")
        print(neutralize(line) if sys.stdout.isatty() else line)


def run_show(settings: Settings, exchange_id: int, *, as_json: bool) -> None:
    log = ConversationLog(settings.paths.log_file)
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


def replayed_turns(log: ConversationLog, e: Exchange) -> tuple[Turn, ...]:
    """The earlier turns the model got with ``e`` (-c/--cid), as it got them: the latest
    ``replayed_turns`` (an option recorded since askgpt logged it) of its conversation."""
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
