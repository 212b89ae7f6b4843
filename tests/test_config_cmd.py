"""`askgpt config path|show|set|unset|edit` as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib

from askgpt.runtime.errors import ExitCode
from conftest import ASKGPT_BIN, REPO


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
    # The invalid edit did not replace the last valid file; it was kept beside it, and the message says where.
    assert tomllib.loads((tmp_path / "config" / "config.toml").read_text()) == {"batch": 64}
    rejected = tmp_path / "config" / "config.rejected.toml"
    assert str(rejected) in broken.stderr and "nonsense = [" in rejected.read_text()
    assert "not valid TOML" in broken.stderr and len(broken.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "config" / "config.draft.toml").exists()


def test_an_edit_that_changes_nothing_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("# mine\nbatch = 64\n")
    before = path.stat().st_mtime_ns
    done = config(tmp_path, "edit", env={"EDITOR": "true", "VISUAL": ""})
    assert done.returncode == 0, done.stderr
    assert path.read_text() == "# mine\nbatch = 64\n" and path.stat().st_mtime_ns == before


HAND_WRITTEN = """\
# my settings
temperature = 0.7

ctx = 8192        # bigger window for work docs
kv_type = "q8_0"  # halves the cache
# a served model, some day:
# endpoint = "http://gpu-box:8080/v1"
system = 'Be terse.'
"""


def test_set_and_unset_keep_comments_order_and_formatting(tmp_path: Path) -> None:
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text(HAND_WRITTEN)
    for args in (["set", "temperature", "0.2"], ["set", "ctx", "16384"], ["set", "batch", "128"],
                 ["unset", "kv_type"]):
        done = config(tmp_path, *args)
        assert done.returncode == 0, (args, done.stderr)
    assert path.read_text() == """\
# my settings
temperature = 0.2

ctx = 16384        # bigger window for work docs
# a served model, some day:
# endpoint = "http://gpu-box:8080/v1"
system = 'Be terse.'
batch = 128
"""


def test_an_api_key_is_never_echoed(tmp_path: Path) -> None:
    done = config(tmp_path, "set", "api_key", "sk-secret-42")
    assert done.returncode == 0 and done.stdout.strip() == "api_key set (not shown)"
    shown = config(tmp_path, "show")
    as_json = config(tmp_path, "show", "--json")
    wrong = config(tmp_path, "set", "api_key", "")
    for result in (done, shown, as_json, wrong):
        assert "sk-secret-42" not in result.stdout + result.stderr
    assert wrong.returncode == ExitCode.USAGE_ERROR


def test_show_prints_toml_values(tmp_path: Path) -> None:
    assert config(tmp_path, "set", "system", "Be brief.").returncode == 0
    lines = {line.split("=")[0].strip(): line for line in config(tmp_path, "show").stdout.splitlines()[1:]}
    assert '= "Be brief."' in lines["system"] and "= true" in lines["log"] and "= 0.2" in lines["temperature"]
    assert "(not set)" in lines["model"] and "= 512" in lines["batch"]
    text = config(tmp_path, "show").stdout
    assert "None" not in text and "True" not in text and "'" not in text


def test_values_are_checked_at_the_edge(tmp_path: Path) -> None:
    from askgpt.runtime.store.settings import max_threads

    path = tmp_path / "config" / "config.toml"
    for key, value, says in [("threads", str(max_threads() + 1), "at most"), ("model", "nosuchmodel", "no model"),
                             ("endpoint", "notaurl", "http"), ("ctx", "100", "at least 256"),
                             ("ctx", "-5", "at least 256"), ("temperature", "nan", "finite"),
                             ("temperature", "inf", "finite"), ("max_tokens", "-1", "at least 1")]:
        result = config(tmp_path, "set", key, value)  # -5 without "--": a value, not an option
        assert result.returncode == ExitCode.USAGE_ERROR, (key, value, result.stderr)
        assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not path.exists()
    model = tmp_path / "copy.gguf"
    model.write_bytes(b"GGUF")
    for key, value in [("ctx", "0"), ("ctx", "256"), ("endpoint", "http://localhost:8080/v1"),
                       ("model", "smollm2"), ("model", str(model))]:
        assert config(tmp_path, "set", key, value).returncode == 0, (key, value)
    assert tomllib.loads(path.read_text())["model"] == str(model.resolve())


def test_temperature_on_the_command_line_is_checked_like_the_file(tmp_path: Path) -> None:
    for value in ("nan", "inf", "-1"):
        result = subprocess.run([ASKGPT_BIN, "-t", value, "-n", "1", "hi"], capture_output=True, text=True,
                                cwd=REPO / "tests", env={**os.environ, "ASKGPT_HOME": str(tmp_path)}, timeout=60)
        assert result.returncode == ExitCode.USAGE_ERROR, (value, result.stderr)
        assert "temperature" in result.stderr and "Traceback" not in result.stderr


def test_a_broken_file_does_not_lock_out_the_commands_that_fix_it(tmp_path: Path) -> None:
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    text = "# mine\nctx = 2048\ntemperature = = 0.3\n"
    path.write_text(text)
    shown = config(tmp_path, "show")
    assert shown.returncode == 0 and "line 3, column" in shown.stderr
    assert "(default)" in shown.stdout
    for args in (["set", "ctx", "4096"], ["unset", "ctx"]):
        refused = config(tmp_path, *args)
        assert refused.returncode == ExitCode.USAGE_ERROR and "line 3, column" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert path.read_text() == text
    env = {**os.environ, "ASKGPT_HOME": str(tmp_path)}
    for command in (["logs"], ["logs", "path"], ["models", "list"]):
        done = subprocess.run([ASKGPT_BIN, *command], capture_output=True, text=True, cwd=REPO / "tests", env=env,
                              timeout=60)
        assert done.returncode == 0, (command, done.stderr)
    models = subprocess.run([ASKGPT_BIN, "models", "list"], capture_output=True, text=True, cwd=REPO / "tests",
                            env=env, timeout=60)
    assert "smollm2" in models.stdout and "line 3" in models.stderr


def test_a_file_with_a_bad_value_can_be_fixed_with_set_and_unset(tmp_path: Path) -> None:
    path = tmp_path / "config" / "config.toml"
    path.parent.mkdir(parents=True)
    path.write_text("threads = 100000  # too many\nctx = 100\n")
    shown = config(tmp_path, "show")
    assert shown.returncode == 0 and "'threads'" in shown.stderr and "'ctx'" in shown.stderr
    fixed = config(tmp_path, "set", "ctx", "2048")
    assert fixed.returncode == 0 and "'threads'" in fixed.stderr  # the one problem left is named
    assert config(tmp_path, "unset", "threads").returncode == 0
    assert tomllib.loads(path.read_text()) == {"ctx": 2048}
    assert config(tmp_path, "show").stderr == ""
