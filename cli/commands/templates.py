"""`askgpt templates list|show|save|edit|rm`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from askgpt.cli.boundary import Commands
from askgpt.cli.options import JsonOpt, ShortExampleOpt, choice, choice_value, complete_templates
from askgpt.cli.state import state
from askgpt.cli.terminal.render import Messages, print_result
from askgpt.runtime.icl.selection import Select

if TYPE_CHECKING:
    from askgpt.runtime.store.templates import TemplateStore

app = Commands(help="Saved prompt templates: a task description and few-shot examples, reused with askgpt -T NAME.")

NameArg = Annotated[str, typer.Argument(metavar="NAME", autocompletion=complete_templates)]


def _store(ctx: typer.Context) -> TemplateStore:
    from askgpt.runtime.store.templates import TemplateStore

    return TemplateStore(state(ctx).paths.templates_dir)


@app.command("list")
def templates_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The built-in and saved templates."""
    store = _store(ctx)
    found = [store.get(name) for name in store.names()]
    lines = [f"{t.name:16s} {'built-in' if t.builtin else 'saved   '}  {(t.system or '')[:70]}" for t in found]
    print_result({"templates": [t.to_json() for t in found]}, "\n".join(lines), as_json=as_json)


@app.command("show")
def templates_show(ctx: typer.Context, name: NameArg, as_json: JsonOpt = False) -> None:
    """One template whole."""
    store = _store(ctx)
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


@app.command("save")
def templates_save(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="lowercase letters, digits, - and _")],
    system: Annotated[str | None, typer.Option("-s", "--system", metavar="TEXT",
                                               help="The task description.", show_default=False)] = None,
    examples: ShortExampleOpt = None,
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
    select: Annotated[Select | None, typer.Option(
        "--select", **choice(Select, "--select"), help="How --shots draws [default: similar].",
        show_default=False)] = None,
) -> None:
    """Save (or replace) template NAME."""
    messages = Messages(sys.stderr, quiet=False)
    path = save(_store(ctx), name, system=system, examples=tuple(examples or ()), examples_file=examples_file,
                suffix=suffix, labels=labels, shots=shots, select=choice_value(select), notify=messages.warn)
    typer.echo(f"saved {name} ({path})")


@app.command("edit")
def templates_edit(ctx: typer.Context, name: NameArg) -> None:
    """Open template NAME's file in $VISUAL or $EDITOR (a built-in one is copied first)."""
    run = state(ctx)
    editor = run.env.get("VISUAL") or run.env.get("EDITOR") or "vi"
    saved = edit(_store(ctx), name, editor)
    typer.echo(f"saved {name} ({saved})" if saved is not None else f"{name} is unchanged; nothing was saved")


@app.command("rm")
def templates_rm(ctx: typer.Context, name: NameArg) -> None:
    """Delete saved template NAME (built-in ones stay)."""
    _store(ctx).remove(name)
    typer.echo(f"removed {name}")


def save(store: TemplateStore, name: str, *, system: str | None, examples: tuple[str, ...],
         examples_file: str | None, suffix: str | None, labels: str | None = None,
         shots: int | None = None, select: str | None = None,
         notify: Callable[[str], None] | None = None) -> Path:
    """Save template NAME; ``--labels auto`` is resolved now, from the examples, and
    ``notify`` is told which labels it took (a template never infers them later)."""
    from askgpt.runtime.documents.inputs import load_examples
    from askgpt.runtime.errors import UsageError
    from askgpt.runtime.icl.labels import AUTO, parse_labels
    from askgpt.runtime.icl.options import IclOptions
    from askgpt.runtime.prompting.request import parse_example
    from askgpt.runtime.store.templates import Template

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


def edit(store: TemplateStore, name: str, editor: str) -> Path | None:
    """Open the template's file in the editor (a built-in one is copied first), then check
    it. Only a change is kept: an unchanged copy of a built-in template is removed again,
    so it does not replace the built-in one (which a later askgpt may improve). Returns the
    file, or None when nothing changed."""
    import shlex
    import subprocess

    from askgpt.runtime.errors import UsageError
    from askgpt.runtime.store.templates import BUILTIN

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
