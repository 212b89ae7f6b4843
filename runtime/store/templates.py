"""Saved prompt templates: a task description and few-shot examples, reused by name
(`askgpt -T NAME "..."`) — GPT-3's in-context learning made a reusable tool.

A template is a system prompt, examples, and an optional suffix appended to the
user's words; for in-context learning also labels (the answer is one of them, see
runtime.icl) and shots (the examples are then a pool K of them are drawn from per input,
by ``select``). A few ship with askgpt; users save their own as JSON files in the
config folder's ``templates/``. A user's template of the same name wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from askgpt.runtime.errors import InputNotFoundError, UsageError
from askgpt.runtime.files import atomic_write
from askgpt.runtime.icl.selection import Select, parse_select
from askgpt.runtime.prompting.request import Example, Request

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Template:
    name: str
    system: str | None = None
    examples: tuple[Example, ...] = ()
    suffix: str | None = None  # appended to the instruction, e.g. "Answer in one word."
    builtin: bool = False
    labels: tuple[str, ...] = ()  # the answer is one of these (--labels)
    shots: int | None = None  # draw this many of the examples per input (--shots); None: all
    select: Select | None = None  # how they are drawn (--select)

    def __post_init__(self) -> None:
        if self.select is not None and self.shots is None:
            raise UsageError("a template's select needs shots")
        if self.shots is not None and self.shots < 0:
            raise UsageError("a template's shots must be 0 or more")

    @property
    def pool(self) -> tuple[Example, ...]:
        """The examples the shots are drawn from (with ``shots`` None, all are used)."""
        return self.examples

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {
            "name": self.name, "system": self.system, "suffix": self.suffix, "builtin": self.builtin,
            "examples": [{"input": e.input, "output": e.output} for e in self.examples]}
        # Written only when set, so a plain template's file is as before.
        if self.labels:
            data["labels"] = list(self.labels)
        if self.shots is not None:
            data["shots"] = self.shots
        if self.select is not None:
            data["select"] = self.select.value
        return data

    def instruction(self, words: str) -> str:
        return f"{words}\n\n{self.suffix}" if self.suffix else words


BUILTIN: dict[str, Template] = {t.name: t for t in (
    Template(
        "translate",
        system="Translate the user's text into French. Reply with the French translation only, on one line.",
        examples=(Example("Good morning.", "Bonjour."), Example("Where is the station?", "Où est la gare ?")),
        builtin=True),
    Template(
        "summarize",
        system="Summarize the user's text in one or two short sentences. Reply with the summary only.",
        suffix="Summarize the text above in one or two sentences.",
        builtin=True),
    Template(
        "explain-code",
        system="Explain what the user's code does, in plain English, in a few sentences.",
        suffix="Explain what this code does.",
        builtin=True),
    Template(
        "commit-message",
        system="Write a one-line git commit message for the user's diff, in the imperative mood, "
               "under 72 characters. Reply with the message only.",
        examples=(Example("--- a/app.py\n+++ b/app.py\n-    return a+b\n+    return a + b",
                          "Format the addition in app.py"),
                  Example("--- a/setup.cfg\n+++ b/setup.cfg\n-version = 1.0\n+version = 1.1",
                          "Bump the version to 1.1")),
        suffix="Write a one-line commit message for this diff.",
        builtin=True),
    Template(
        "classify",
        system="Classify the sentiment of the user's text. Reply with exactly one word: positive, negative "
               "or neutral.",
        examples=(Example("I love this phone, it is great.", "positive"),
                  Example("The food was cold and awful.", "negative"),
                  Example("The meeting is at noon.", "neutral"),
                  Example("What a fantastic day!", "positive"),
                  Example("I hate waiting in line.", "negative")),
        builtin=True),
)}


class TemplateStore:
    """The user's templates in ``folder`` (one NAME.json each), over the built-in ones."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def names(self) -> list[str]:
        mine = {p.stem for p in self.folder.glob("*.json")} if self.folder.is_dir() else set()
        return sorted(mine | set(BUILTIN))

    def get(self, name: str) -> Template:
        path = self.folder / f"{name}.json"
        if NAME_PATTERN.match(name) and path.is_file():
            return _parse(name, path)
        if name in BUILTIN:
            return BUILTIN[name]
        raise InputNotFoundError(f"no template {name!r}", hint=f"templates: {', '.join(self.names())}")

    def save(self, template: Template) -> Path:
        if not NAME_PATTERN.match(template.name):
            raise UsageError(f"bad template name {template.name!r}",
                             hint="use lowercase letters, digits, - and _ (up to 64)")
        path = self.folder / f"{template.name}.json"
        data = template.to_json()
        del data["builtin"], data["name"]
        with atomic_write(path) as fh:
            fh.write((json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        return path

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def remove(self, name: str) -> None:
        path = self.folder / f"{name}.json"
        if not (NAME_PATTERN.match(name) and path.is_file()):
            what = "a built-in template cannot be removed" if name in BUILTIN else f"no saved template {name!r}"
            raise InputNotFoundError(what)
        path.unlink()


def _parse(name: str, path: Path) -> Template:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        examples = tuple(Example(str(e["input"]), str(e["output"])) for e in data.get("examples", []))
        system, suffix = data.get("system"), data.get("suffix")
        if not (system is None or isinstance(system, str)) or not (suffix is None or isinstance(suffix, str)):
            raise TypeError("system and suffix must be strings")
        labels = data.get("labels") or []
        if not isinstance(labels, list) or not all(isinstance(x, str) and x.strip() for x in labels):
            raise TypeError("labels must be a list of strings")
        shots = data.get("shots")
        if not (shots is None or (isinstance(shots, int) and not isinstance(shots, bool))):
            raise TypeError("shots must be a whole number")
        select = None if data.get("select") is None else parse_select(str(data["select"]))
        return Template(name, system, examples, suffix, labels=tuple(labels), shots=shots, select=select)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, UsageError) as exc:
        what = exc.message if isinstance(exc, UsageError) else exc
        raise UsageError(f"template {path} is not valid: {what}", hint=f"fix it or askgpt templates rm {name}") from exc


def template_words(template: Template, words: tuple[str, ...]) -> tuple[tuple[str, ...], Template]:
    """With no words of the user's own, a template's suffix is the question itself (so
    `git diff | askgpt -T commit-message` reads the diff as a document); it is then not
    appended a second time."""
    if words or not template.suffix:
        return words, template
    return (template.suffix,), replace(template, suffix=None)


def apply_template(template: Template, request: Request, *, system_given: bool) -> Request:
    """The request with the template's task: its system prompt (unless -s was given), its
    examples before the user's, and its suffix after the user's words."""
    return replace(
        request,
        system=request.system if system_given or template.system is None else template.system,
        examples=(*template.examples, *request.examples),
        instruction=template.instruction(request.instruction),
    )
