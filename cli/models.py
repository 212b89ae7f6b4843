"""`askgpt models list|info`."""

from __future__ import annotations

import os

from askgpt.runtime.errors import AskgptError
from askgpt.runtime.model_info import ModelFacts, format_facts, model_facts
from askgpt.runtime.models import list_models, resolve_model
from askgpt.runtime.settings import load_settings

from .render import Messages, print_result


def run_list(messages: Messages, *, as_json: bool) -> None:
    settings = load_settings(os.environ)
    rows: list[dict[str, object]] = []
    lines = []
    for ref in list_models(settings.paths.models_dir):
        try:
            facts: ModelFacts | None = model_facts(ref.path)
        except AskgptError as exc:  # one bad file does not hide the others
            facts = None
            messages.warn(f"{ref.name}: {exc.message}")
        tag = " (built-in, default)" if ref.builtin else ""
        details = facts.to_json() if facts else {"path": str(ref.path)}
        rows.append({"name": ref.name, "builtin": ref.builtin, **details})
        if facts is None:
            lines.append(f"{ref.name}\t?\t{ref.path}")
            continue
        vision = "\tvision" if facts.vision else ""
        lines.append(f"{ref.name}\t{facts.size / 1e6:,.0f} MB\t{facts.architecture}\t{facts.params_label}\t"
                     f"{facts.file_type}\tctx {facts.context_length:,}{vision}\t{ref.path}{tag}")
    print_result({"models": rows}, "\n".join(lines), as_json=as_json)
    if not as_json:
        messages.warn(f"add models by putting NAME.gguf in {settings.paths.models_dir}")


def run_info(spec: str, *, as_json: bool) -> None:
    settings = load_settings(os.environ)
    facts = model_facts(resolve_model(spec, settings.paths.models_dir).path)
    print_result(facts.to_json(), format_facts(facts), as_json=as_json)
