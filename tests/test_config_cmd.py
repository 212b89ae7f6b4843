"""`askgpt config path|show|set|unset|edit` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib
from conftest import ASKGPT_BIN, REPO

from askgpt.runtime.errors import ExitCode


def config(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ASKGPT_BIN, "config", *args], capture_output=True, text=True, cwd=REPO / "tests",
                          env={**os.environ, "ASKGPT_HOME": str(home), **(env or {})}, timeout=60)


def test_set_show_unset_round_trip(tmp_path: Path) -> None:
    path = Path(config(tmp_path, "path").stdout.strip())
    assert path == tmp_path / "config" / "config.toml" and not path.exists()
    for key, value in [("ctx", "2048"), ("temperature", "0.5"), ("log", "no"), ("system", 'Be "terse".\\n'),
                       ("kv_type", "q8_0")]:
        assert config(tmp_path, "set", key, value).returncode == 0
    data = tomllib.loads(path.read_text())
    assert data == {"ctx": 2048, "temperature": 0.5, "system": 'Be "terse".\\n', "kv_type": "q8_0", "log": False}
    shown = json.loads(config(tmp_path, "show", "--json", env={"ASKGPT_MODEL": "phi"}).stdout)
    assert shown["ctx"] == {"value": 2048, "source": "config file"}
    assert shown["batch"] == {"value": 512, "source": "default"}
    assert shown["model"] == {"value": "phi", "source": "environment (ASKGPT_MODEL)"}
    assert "(config file)" in config(tmp_path, "show").stdout
    assert config(tmp_path, "unset", "ctx").stdout.strip() == "removed ctx"
    assert config(tmp_path, "unset", "ctx").stdout.strip() == "ctx was not set"
    assert "ctx" not in tomllib.loads(path.read_text())


def test_bad_values_are_refused_and_the_file_is_unchanged(tmp_path: Path) -> None:
    assert config(tmp_path, "set", "ctx", "1024").returncode == 0
    path = tmp_path / "config" / "config.toml"
    before = path.read_text()
    for key, value in [("kv_type", "q4"), ("ctx", "big"), ("threads", "0"), ("log", "maybe"), ("colour", "red"),
                       ("repeat_penalty", "0")]:
        result = config(tmp_path, "set", key, value)
        assert result.returncode == ExitCode.USAGE_ERROR, (key, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    assert path.read_text() == before
    assert config(tmp_path, "unset", "colour").returncode == ExitCode.USAGE_ERROR


def test_edit_runs_the_editor_and_checks_the_result(tmp_path: Path) -> None:
    editor = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'a').write('batch = 64\\n')\""
    assert config(tmp_path, "edit", env={"EDITOR": editor, "VISUAL": ""}).returncode == 0
    assert tomllib.loads((tmp_path / "config" / "config.toml").read_text()) == {"batch": 64}
    breaker = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'a').write('nonsense = [\\n')\""
    broken = config(tmp_path, "edit", env={"EDITOR": breaker, "VISUAL": ""})
    assert broken.returncode == ExitCode.USAGE_ERROR and "config" in broken.stderr
