"""`askgpt models list|info`."""

from __future__ import annotations

import os
from dataclasses import replace

from askgpt.cli.render import Messages, print_result
from askgpt.runtime.errors import AskgptError, ModelNotFoundError, UsageError
from askgpt.runtime.models.discovery import Registry, discover, environ
from askgpt.runtime.models.info import ModelFacts, format_facts, model_facts
from askgpt.runtime.models.registry import BUILTIN_ALIASES, ModelRef, check_model_name, list_models, resolve_model
from askgpt.runtime.store.settings import load_settings


def run_list(messages: Messages, *, as_json: bool) -> None:
    settings = load_settings(os.environ)
    rows: list[dict[str, object]] = []
    lines = []
    registered = []
    for f in Registry(settings.paths.data_dir).entries():
        if f.name.lower() in BUILTIN_ALIASES:  # added before such names were refused: -m never reaches it
            messages.warn(f"the added model {f.name!r} is hidden by the built-in model's name; "
                          f"askgpt models rm {f.name}, then add it under another name")
            continue
        registered.append(f)
    refs = [(ref, "askgpt") for ref in list_models(settings.paths.models_dir)]
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


def run_info(spec: str, *, as_json: bool) -> None:
    settings = load_settings(os.environ)
    ref = resolve_model(spec, settings.paths.models_dir)
    if ref.endpoint is not None:
        data = {"name": ref.name, "endpoint": ref.location, "remote_model": ref.remote_model}
        print_result(data, f"{ref.name}: served by {ref.location}, model {ref.remote_model or '(first)'}",
                     as_json=as_json)
        return
    facts = model_facts(ref.path)
    print_result(facts.to_json(), format_facts(facts), as_json=as_json)


def run_add(path: str, alias: str, mmproj: str | None) -> str:
    from pathlib import Path

    check_model_name(alias)
    settings = load_settings(os.environ)
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelNotFoundError(f"model file not found: {path}")
    model_facts(file)  # a file askgpt cannot read is refused now, not at the first ask
    found = Registry(settings.paths.data_dir).add(alias, Path(path).expanduser(),
                                                  Path(mmproj).expanduser() if mmproj else None)
    return f"added {found.name} -> {found.path}" + (f" (mmproj {found.mmproj})" if found.mmproj else "")


def run_add_remote(name: str, endpoint: str, remote_model: str | None) -> str:
    check_model_name(name)
    settings = load_settings(os.environ)
    found = Registry(settings.paths.data_dir).add_remote(name, endpoint, remote_model)
    return f"added {found.name} -> {found.endpoint}" + (f" ({found.remote_model})" if found.remote_model else "")


def run_default(name: str) -> str:
    from askgpt.runtime.store.config_file import set_value

    settings = load_settings(os.environ)
    ref = resolve_model(name, settings.paths.models_dir)  # it must exist
    set_value(settings.paths, "model", name)
    return f"default model: {ref.name} ({ref.path})"


def run_rm(name: str, *, delete_file: bool) -> str:
    settings = load_settings(os.environ)
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
        return f"removed {name} and deleted {found.path}"
    return f"removed {name} (the file {found.path} is left alone; --delete-file deletes it)"


def run_pull(repo: str, filename: str, *, endpoint: str | None, revision: str | None) -> str:
    from askgpt.runtime.models.discovery import Registry
    from askgpt.runtime.models.pull import pull

    settings = load_settings(os.environ)
    pulled = pull(repo, filename, settings.paths.models_dir, endpoint=endpoint, revision=revision)
    name = pulled.path.stem
    Registry(settings.paths.data_dir).add(name, pulled.path, created_by_askgpt=True)
    return f"pulled {name} ({pulled.size / 1e6:,.1f} MB, sha256 {pulled.sha256[:16]}…) -> {pulled.path}"
