"""`askgpt logs`: the conversation log (runtime.history), listed, searched and shown."""

from __future__ import annotations

import datetime
import json
import sys

from askgpt.runtime.errors import InputNotFoundError
from askgpt.runtime.history import ConversationLog, Exchange
from askgpt.runtime.settings import Settings

from .render import neutralize


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def run_list(settings: Settings, *, limit: int, query: str | None, conversation: str | None,
             as_json: bool) -> None:
    found = ConversationLog(settings.paths.log_file).recent(limit=limit, query=query, conversation=conversation)
    if as_json:
        json.dump([e.to_json() for e in found], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    for e in found:
        line = (f"{e.id:>5}  {_when(e.created)}  {e.conversation_id}  {e.model}  "
                f"{_one_line(e.prompt, 40)}  ->  {_one_line(e.answer, 50)}")
        print(neutralize(line) if sys.stdout.isatty() else line)


def run_show(settings: Settings, exchange_id: int, *, as_json: bool) -> None:
    found = ConversationLog(settings.paths.log_file).get(exchange_id)
    if found is None:
        raise InputNotFoundError(f"no exchange {exchange_id} in the log", hint="askgpt logs lists them")
    if as_json:
        json.dump(found.to_json(), sys.stdout, indent=1)
        sys.stdout.write("\n")
        return
    text = format_exchange(found)
    print(neutralize(text) if sys.stdout.isatty() else text)


def format_exchange(e: Exchange) -> str:
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
    lines += ["", f"> {e.prompt}", "", e.answer]
    return "\n".join(lines)
