"""`askgpt config path|show|set|unset|edit`."""

from __future__ import annotations

import os
import shlex
import subprocess

from askgpt.runtime.config_file import effective, set_value, unset_value
from askgpt.runtime.errors import UsageError
from askgpt.runtime.settings import Paths, read_config_file

from .render import print_result


def run_show(paths: Paths, env: dict[str, str], *, as_json: bool) -> None:
    rows = effective(paths, env)
    data = {r.key: {"value": r.value, "source": r.source} for r in rows}
    width = max(len(r.key) for r in rows)
    text = "\n".join(f"{r.key:<{width}} = {r.value!r:<24} ({r.source})" for r in rows)
    print_result(data, f"# {paths.config_file}\n{text}", as_json=as_json)


def run_set(paths: Paths, key: str, value: str) -> str:
    return f"{key} = {set_value(paths, key, value)!r}"


def run_unset(paths: Paths, key: str) -> str:
    return f"removed {key}" if unset_value(paths, key) else f"{key} was not set"


def run_edit(paths: Paths, env: dict[str, str]) -> None:
    """Open the file in $VISUAL / $EDITOR (vi otherwise), then check what was written."""
    editor = env.get("VISUAL") or env.get("EDITOR") or "vi"
    paths.config_file.parent.mkdir(parents=True, exist_ok=True)
    paths.config_file.touch(exist_ok=True)
    try:
        subprocess.run([*shlex.split(editor), str(paths.config_file)], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise UsageError(f"the editor {editor!r} failed: {exc}", hint="set $EDITOR") from exc
    read_config_file(paths.config_file)  # a usage error naming the problem if the edit broke it


def environ() -> dict[str, str]:
    return dict(os.environ)
