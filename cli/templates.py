"""`askgpt templates list|show|save|edit|rm`."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

from askgpt.cli.render import print_result
from askgpt.runtime.documents.inputs import load_examples
from askgpt.runtime.errors import UsageError
from askgpt.runtime.icl.labels import AUTO, parse_labels
from askgpt.runtime.icl.options import IclOptions
from askgpt.runtime.prompting.request import parse_example
from askgpt.runtime.store.templates import BUILTIN, Template, TemplateStore


def run_list(store: TemplateStore, *, as_json: bool) -> None:
    found = [store.get(name) for name in store.names()]
    lines = [f"{t.name:16s} {'built-in' if t.builtin else 'saved   '}  {(t.system or '')[:70]}" for t in found]
    print_result({"templates": [t.to_json() for t in found]}, "\n".join(lines), as_json=as_json)


def run_show(store: TemplateStore, name: str, *, as_json: bool) -> None:
    t = store.get(name)
    lines = [f"template {t.name} ({'built-in' if t.builtin else store.path(name)})"]
    if t.system:
        lines.append(f"system: {t.system}")
    lines += [f"example: {e.input!r} => {e.output!r}" for e in t.examples]
    if t.suffix:
        lines.append(f"suffix: {t.suffix}")
    if t.labels:
        lines.append(f"labels: {', '.join(t.labels)}")
    if t.shots is not None:
        lines.append(f"shots: {t.shots} drawn per input ({(t.select.value if t.select else 'default')})")
    print_result(t.to_json(), "\n".join(lines), as_json=as_json)


def run_save(store: TemplateStore, name: str, *, system: str | None, examples: tuple[str, ...],
             examples_file: str | None, suffix: str | None, labels: str | None = None,
             shots: int | None = None, select: str | None = None,
             notify: Callable[[str], None] | None = None) -> Path:
    """Save template NAME; ``--labels auto`` is resolved now, from the examples, and
    ``notify`` is told which labels it took (a template never infers them later)."""
    options = IclOptions.of(labels=labels, shots=shots, select=select).check()
    parsed = [parse_example(e) for e in examples]
    if examples_file:
        parsed += load_examples(examples_file)
    if not system and not parsed and not suffix:
        raise UsageError("a template needs a system prompt, examples or a suffix",
                         hint='e.g. askgpt templates save haiku -s "Answer with a haiku."')
    if shots is not None and not parsed:
        raise UsageError("--shots draws from the template's examples, but none were given",
                         hint="give a pool with --examples FILE")
    chosen = parse_labels(labels, parsed) if labels is not None else ()
    if labels is not None and labels.strip().lower() == AUTO and notify is not None:
        notify(f"labels from the examples: {', '.join(chosen)}")
    return store.save(Template(name, system or None, tuple(parsed), suffix or None, labels=chosen,
                               shots=shots, select=options.select))


def run_edit(store: TemplateStore, name: str, editor: str) -> Path | None:
    """Open the template's file in the editor (a built-in one is copied first), then check
    it. Only a change is kept: an unchanged copy of a built-in template is removed again,
    so it does not replace the built-in one (which a later askgpt may improve). Returns the
    file, or None when nothing changed."""
    path = store.path(name)
    copied = not path.is_file()
    if copied:
        if name not in BUILTIN:
            store.get(name)  # raises "no template"
        store.save(BUILTIN[name])
    before = path.read_bytes()
    try:
        subprocess.run([*shlex.split(editor), str(path)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        if copied:
            path.unlink(missing_ok=True)
        raise UsageError(f"the editor {editor!r} failed: {exc}", hint="set $EDITOR") from exc
    try:
        unchanged = path.read_bytes() == before
    except FileNotFoundError:  # the editor deleted it: the built-in one (if any) applies again
        return None
    if unchanged:
        if copied:
            path.unlink()
        return None
    store.get(name)  # a usage error naming the problem if the edit broke it
    return path


def dump(template: Template) -> str:
    return json.dumps(template.to_json(), indent=1)
