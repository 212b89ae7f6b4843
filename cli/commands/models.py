"""`askgpt models list|catalog|add|pull|default|rm|info`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from askgpt.cli.boundary import Commands
from askgpt.cli.options import JsonOpt, complete_catalog, complete_models
from askgpt.cli.state import state
from askgpt.cli.terminal.render import Messages, print_result
from askgpt.runtime.store.settings import Settings

app = Commands(help="Manage models.")


@app.command("list")
def models_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """The built-in model and the GGUF files in the models folder: size, architecture,
    parameters, quantization, context length, vision (from their headers only)."""
    list_models(state(ctx).settings, Messages(sys.stderr, quiet=False), as_json=as_json)


@app.command("add")
def models_add(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="PATH|NAME",
                                        help="A .gguf file; with --endpoint, the name to give the served model.")],
    alias: Annotated[str | None, typer.Option("--alias", metavar="NAME", help="The name -m will take.",
                                              show_default=False)] = None,
    mmproj: Annotated[str | None, typer.Option("--mmproj", metavar="PATH", help="Its vision projector (mmproj .gguf).",
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
    settings = state(ctx).settings
    if endpoint is not None:
        typer.echo(add_remote(settings, path, endpoint, remote_model))
    elif alias is None:
        from askgpt.runtime.errors import UsageError

        raise UsageError("give --alias NAME", hint="or --endpoint URL to name a served model")
    else:
        typer.echo(add(settings, path, alias, mmproj))


@app.command("catalog")
def models_catalog(as_json: JsonOpt = False) -> None:
    """Well-known small GGUF models `models pull NAME` fetches: download size, memory needed,
    licence, whether it sees images, and whether its checksums are pinned."""
    print_result(*catalog_table(), as_json=as_json)


@app.command("pull")
def models_pull(
    ctx: typer.Context,
    repo: Annotated[str, typer.Argument(
        metavar="NAME|REPO", help="A name from `askgpt models catalog`, or a Hugging Face repository "
        "(ORG/NAME-GGUF) followed by FILE.", autocompletion=complete_catalog)],
    filename: Annotated[str | None, typer.Argument(metavar="[FILE]", help="The .gguf file in REPO.",
                                                   show_default=False)] = None,
    revision: Annotated[str | None, typer.Option("--revision", metavar="REV", help="Branch, tag or commit.",
                                                 show_default=False)] = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", metavar="URL",
                                                 help="Another hub (default: $HF_ENDPOINT or huggingface.co).",
                                                 show_default=False)] = None,
) -> None:
    """Download a GGUF into the models folder (online; resumable; checksum checked): a
    catalog model with its vision projector, or REPO FILE."""
    settings = state(ctx).settings
    if filename is None:
        typer.echo(pull_catalog(settings, repo, Messages(sys.stderr, quiet=False), endpoint=endpoint,
                                revision=revision))
    else:
        typer.echo(pull(settings, repo, filename, endpoint=endpoint, revision=revision))


@app.command("default")
def models_default(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="NAME|PATH",
                                                                          autocompletion=complete_models)]) -> None:
    """Make NAME the model askgpt uses when -m is not given (the config's model key)."""
    from askgpt.runtime.models.registry import resolve_model
    from askgpt.runtime.store.config_file import set_value

    settings = state(ctx).settings
    ref = resolve_model(name, settings.paths.models_dir)  # it must exist
    set_value(settings.paths, "model", name)
    typer.echo(f"default model: {ref.name} ({ref.path})")


@app.command("rm")
def models_rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", autocompletion=complete_models)],
    delete_file: Annotated[bool, typer.Option("--delete-file", help="Also delete the file.")] = False,
) -> None:
    """Forget an added model; its file is deleted only with --delete-file."""
    typer.echo(remove(state(ctx).settings, name, delete_file=delete_file))


@app.command("info")
def models_info(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="NAME|PATH", help="A model name or .gguf path.",
                                         autocompletion=complete_models)],
    as_json: JsonOpt = False,
) -> None:
    """What a GGUF file holds, from its header (instant, even for a 10 GB file)."""
    from askgpt.runtime.engine.kinds import is_local
    from askgpt.runtime.models.info import format_facts, model_facts
    from askgpt.runtime.models.registry import resolve_model

    settings = state(ctx).settings
    ref = resolve_model(model, settings.paths.models_dir)
    if not is_local(ref):
        data = {"name": ref.name, "endpoint": ref.location, "remote_model": ref.remote_model}
        print_result(data, f"{ref.name}: served by {ref.location}, model {ref.remote_model or '(first)'}",
                     as_json=as_json)
        return
    facts = model_facts(ref.path)
    print_result(facts.to_json(), format_facts(facts), as_json=as_json)


def list_models(settings: Settings, messages: Messages, *, as_json: bool) -> None:
    from dataclasses import replace

    from askgpt.runtime.errors import AskgptError
    from askgpt.runtime.models.discovery import Registry, discover, environ
    from askgpt.runtime.models.info import ModelFacts, model_facts
    from askgpt.runtime.models.registry import BUILTIN_ALIASES, ModelRef
    from askgpt.runtime.models.registry import list_models as models_in

    rows: list[dict[str, object]] = []
    lines = []
    registered = []
    for f in Registry(settings.paths.data_dir).entries():
        if f.name.lower() in BUILTIN_ALIASES:  # added before such names were refused: -m never reaches it
            messages.warn(f"the added model {f.name!r} is hidden by the built-in model's name; "
                          f"askgpt models rm {f.name}, then add it under another name")
            continue
        registered.append(f)
    refs = [(ref, "askgpt") for ref in models_in(settings.paths.models_dir)]
    refs += [(ModelRef(f.name, f.path, mmproj=f.mmproj), "added") for f in registered if f.endpoint is None]
    refs += [(ModelRef(f.name, f.path, mmproj=f.mmproj), f.source) for f in discover(environ())]
    if settings.config_error is not None:  # listed anyway: the list helps to fix the config
        messages.warn(f"{settings.config_error.message}; its default model is not marked")
    default = settings.file_defaults.model
    for ref, source in refs:
        try:
            facts: ModelFacts | None = model_facts(ref.path)
            if facts is not None and ref.mmproj is not None:  # `models add --mmproj`, or ollama's layer
                how = "registered" if source == "added" else f"in {source}'s manifest"
                facts = replace(facts, vision=f"mmproj {how}: {ref.mmproj}")
        except AskgptError as exc:  # one bad file does not hide the others
            facts = None
            messages.warn(f"{ref.name}: {exc.message}")
        is_default = ref.name == default or (ref.builtin and default is None)
        tag = (" (built-in" if ref.builtin else " (") + (", default)" if is_default else ")")
        tag = "" if tag == " ()" else tag.replace("(, ", "(")
        details = facts.to_json() if facts else {"path": str(ref.path)}
        rows.append({"name": ref.name, "builtin": ref.builtin, "source": source, "default": is_default, **details})
        if facts is None:
            lines.append(f"{ref.name}\t?\t{ref.path}")
            continue
        vision = "\tvision" if facts.vision else ""
        lines.append(f"{ref.name}\t{facts.size / 1e6:,.0f} MB\t{facts.architecture}\t{facts.params_label}\t"
                     f"{facts.file_type}\tctx {facts.context_length:,}{vision}\t{ref.path}{tag}")
    for f in registered:
        if f.endpoint is not None:  # served models: nothing to read here, and nothing is contacted
            ref = ModelRef(f.name, f.path, endpoint=f.endpoint, remote_model=f.remote_model)
            is_default = f.name == default
            rows.append({"name": f.name, "builtin": False, "source": "served", "default": is_default,
                         "endpoint": ref.location, "remote_model": f.remote_model})
            lines.append(f"{f.name}\tserved\t{f.remote_model or '(first model)'}\t{ref.location}"
                         + (" (default)" if is_default else ""))
    print_result({"models": rows}, "\n".join(lines), as_json=as_json)
    if not as_json:
        messages.warn(f"add models by putting NAME.gguf in {settings.paths.models_dir}")


def add(settings: Settings, path: str, alias: str, mmproj: str | None) -> str:
    from pathlib import Path

    from askgpt.runtime.errors import ModelNotFoundError
    from askgpt.runtime.models.discovery import Registry
    from askgpt.runtime.models.info import model_facts
    from askgpt.runtime.models.registry import check_model_name

    check_model_name(alias)
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    model_facts(file)  # a file askgpt cannot read is refused now, not at the first ask
    found = Registry(settings.paths.data_dir).add(alias, Path(path).expanduser(),
                                                  Path(mmproj).expanduser() if mmproj else None)
    return f"added {found.name} -> {found.path}" + (f" (mmproj {found.mmproj})" if found.mmproj else "")


def add_remote(settings: Settings, name: str, endpoint: str, remote_model: str | None) -> str:
    from askgpt.runtime.models.discovery import Registry
    from askgpt.runtime.models.registry import check_model_name

    check_model_name(name)
    found = Registry(settings.paths.data_dir).add_remote(name, endpoint, remote_model)
    return f"added {found.name} -> {found.endpoint}" + (f" ({found.remote_model})" if found.remote_model else "")


def remove(settings: Settings, name: str, *, delete_file: bool) -> str:
    from askgpt.runtime.errors import UsageError
    from askgpt.runtime.models.discovery import Registry

    registry = Registry(settings.paths.data_dir)
    entry = registry.get(name)
    if delete_file and entry is not None and entry.endpoint is not None:
        # Checked before the entry goes: a served model has no file (its path is ".").
        raise UsageError(f"{name} is a served model ({entry.endpoint}): there is no file to delete",
                         hint=f"askgpt models rm {name} forgets it")
    found = registry.remove(name)
    if found.endpoint is not None:
        return f"removed {name}"
    if delete_file or found.created_by_askgpt:
        found.path.unlink(missing_ok=True)
        if found.created_by_askgpt and found.mmproj is not None:  # pulled with it from the catalog
            import shutil

            found.mmproj.unlink(missing_ok=True)
            shutil.rmtree(found.path.parent / ".pulling", ignore_errors=True)  # huggingface_hub's leftovers
            try:
                found.path.parent.rmdir()  # the entry's own folder, once empty
            except OSError:
                pass
            return f"removed {name} and deleted {found.path} and {found.mmproj}"
        return f"removed {name} and deleted {found.path}"
    return f"removed {name} (the file {found.path} is left alone; --delete-file deletes it)"


def pull(settings: Settings, repo: str, filename: str, *, endpoint: str | None, revision: str | None) -> str:
    from askgpt.runtime.models.discovery import Registry
    from askgpt.runtime.models.pull import pull as download

    pulled = download(repo, filename, settings.paths.models_dir, endpoint=endpoint, revision=revision)
    name = pulled.path.stem
    Registry(settings.paths.data_dir).add(name, pulled.path, created_by_askgpt=True)
    return f"pulled {name} ({pulled.size / 1e6:,.1f} MB, sha256 {pulled.sha256[:16]}…) -> {pulled.path}"


def catalog_table() -> tuple[dict[str, object], str]:
    """The catalog as JSON and as a table for people."""
    from askgpt.runtime.engine.memory import WORKING_BYTES
    from askgpt.runtime.models.catalog import ESTIMATE_CTX, load_catalog

    entries = list(load_catalog())
    basis = (f"RAM: the files, the f16 attention cache for {ESTIMATE_CTX:,} tokens (--ctx) and "
             f"{WORKING_BYTES // 2**20} MiB of working buffers; a rough estimate")

    def gb(n: int | None) -> str:
        return "?" if n is None else f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"

    rows = [("NAME", "SIZE", "RAM", "LICENCE", "VISION", "CHECKSUMS")]
    rows += [(e.name, gb(e.download_bytes), gb(e.ram_bytes(working_bytes=WORKING_BYTES)), e.licence,
              "yes" if e.vision else "no", "pinned" if e.confirmed else "not confirmed") for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += ["", basis + ".", "askgpt models pull NAME downloads one (with its vision projector)."]
    data = {"models": [e.to_json(working_bytes=WORKING_BYTES) for e in entries], "ram_estimate": basis}
    return data, "\n".join(lines)


def pull_catalog(settings: Settings, name: str, messages: Messages, *, endpoint: str | None,
                 revision: str | None) -> str:
    from askgpt.runtime.errors import UsageError
    from askgpt.runtime.models.catalog import load_catalog
    from askgpt.runtime.models.discovery import Registry
    from askgpt.runtime.models.pull import pull_entry

    if "/" in name:
        raise UsageError(f"give the .gguf file to pull from {name}: askgpt models pull {name} FILE",
                         hint="or a NAME from `askgpt models catalog`")
    entry = load_catalog().get(name)
    for file in entry.files:
        if not file.pinned:
            messages.warn(f"the catalog does not pin {file.name}'s SHA-256: checking the hub's checksum"
                          + (", its size" if file.size is not None else "") + " and its GGUF header only")
    pulled = pull_entry(entry, settings.paths.models_dir, endpoint=endpoint, revision=revision)
    Registry(settings.paths.data_dir).add(entry.name, pulled.model.path, pulled.mmproj.path if pulled.mmproj else None,
                                          created_by_askgpt=True)
    files = [pulled.model] + ([pulled.mmproj] if pulled.mmproj else [])
    size = sum(f.size for f in files)
    vision = f", vision projector {pulled.mmproj.path.name}" if pulled.mmproj else ""
    return (f"pulled {entry.name} ({size / 1e6:,.1f} MB{vision}; "
            f"{'SHA-256 as pinned' if entry.confirmed else 'SHA-256 not pinned'}) -> {pulled.model.path.parent}")
