"""Folders, config precedence and the model registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from askgpt.runtime.errors import ModelNotFoundError, UsageError
from askgpt.runtime.models.registry import builtin_model, list_models, resolve_model
from askgpt.runtime.store.settings import Defaults, load_settings, resolve_paths


def test_askgpt_home_holds_all_folders(tmp_path: Path) -> None:
    p = resolve_paths({"ASKGPT_HOME": str(tmp_path)})
    assert {p.config_dir.parent, p.data_dir.parent, p.cache_dir.parent} == {tmp_path}
    assert p.models_dir == tmp_path / "data" / "models"


def test_platform_folders_without_askgpt_home() -> None:
    p = resolve_paths({})
    assert "askgpt" in str(p.config_dir) and "askgpt" in str(p.data_dir) and "askgpt" in str(p.cache_dir)


def test_env_model_beats_config(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('model = "from-config"\ntemperature = 0\n')
    s = load_settings({"ASKGPT_HOME": str(tmp_path)})
    assert s.defaults.model == "from-config" and s.defaults.temperature == 0
    s = load_settings({"ASKGPT_HOME": str(tmp_path), "ASKGPT_MODEL": "from-env", "ASKGPT_DEBUG": "1"})
    assert s.defaults.model == "from-env" and s.debug


@pytest.mark.parametrize("text", ['ctx = "big"\n', "ctx = true\n", "not toml ==\n", 'kv_type = "q4"\n',
                                  "threads = 0\n", 'batch = "64"\n', "prefix_cache = 1\n", "prefix_cache_mb = 0\n",
                                  "lookup_tokens = -1\n", "gpu_layers = -2\n", "gpu_layers = true\n",
                                  # the same checks as `config set` and the command line (settings.KEYS)
                                  "threads = 100000\n", "ctx = 100\n", "ctx = -5\n", "temperature = nan\n",
                                  "temperature = inf\n", 'endpoint = "notaurl"\n', 'endpoint = "ftp://x/v1"\n',
                                  'model = ""\n', "endpoint_timeout = 0\n", "max_tokens = 0\n", "batch = 4294967296\n"])
def test_bad_config_is_a_usage_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text(text)
    settings = load_settings({"ASKGPT_HOME": str(tmp_path)})  # the folders stay usable (logs, models list)
    assert settings.paths.config_dir == tmp_path / "config" and settings.config_error is not None
    with pytest.raises(UsageError):
        settings.defaults  # noqa: B018 - asking for the values is what fails


def test_a_syntax_error_says_where(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("# mine\nctx = 2048\ntemperature = = 0.3\n")
    error = load_settings({"ASKGPT_HOME": str(tmp_path)}).config_error
    assert error is not None and "line 3, column" in error.message


def test_one_table_checks_every_key() -> None:
    from dataclasses import fields

    from askgpt.runtime.store.settings import KEYS, MIN_CTX, max_threads, value_problem

    assert list(KEYS) == [f.name for f in fields(Defaults)]
    for f in fields(Defaults):  # every built-in default passes its own key's check
        assert f.default is None or value_problem(f.name, f.default) is None, f.name
    assert value_problem("ctx", 0) is None and value_problem("ctx", MIN_CTX) is None
    assert value_problem("ctx", MIN_CTX - 1) is not None
    assert value_problem("temperature", float("nan")) is not None and value_problem("temperature", 0) is None
    assert value_problem("threads", max_threads()) is None and value_problem("threads", max_threads() + 1) is not None
    assert value_problem("endpoint", "https://h:1/v1") is None and value_problem("endpoint", "h:1") is not None


def test_threads_batch_and_kv_type_come_from_the_config(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text('threads = 3\nbatch = 128\nkv_type = "q8_0"\n')
    d = load_settings({"ASKGPT_HOME": str(tmp_path)}).defaults
    assert (d.threads, d.batch, d.kv_type) == (3, 128, "q8_0")


def test_performance_keys_come_from_the_config(tmp_path: Path) -> None:
    from askgpt.runtime.store.settings import prefix_cache_config

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text(
        "gpu_layers = 0\nlookup_tokens = 8\nprefix_cache_mb = 64\n")
    settings = load_settings({"ASKGPT_HOME": str(tmp_path)})
    d = settings.defaults
    assert (d.gpu_layers, d.lookup_tokens, d.prefix_cache) == (0, 8, True)
    config = prefix_cache_config(settings)
    assert config is not None and config.max_bytes == 64 * 2**20 and config.folder == tmp_path / "cache" / "prefix"
    (tmp_path / "config" / "config.toml").write_text("prefix_cache = false\n")
    assert prefix_cache_config(load_settings({"ASKGPT_HOME": str(tmp_path)})) is None


def test_no_config_gives_defaults(tmp_path: Path) -> None:
    assert load_settings({"ASKGPT_HOME": str(tmp_path)}).defaults == Defaults()


def test_builtin_model_is_the_packaged_gguf() -> None:
    ref = builtin_model()
    assert ref.builtin and ref.path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert ref.path.read_bytes()[:4] == b"GGUF"
    for alias in (None, "smollm2", "default", "SmolLM2"):
        assert resolve_model(alias, Path("/nowhere")) == ref


def test_resolve_path_and_name(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "phi.gguf").write_bytes(b"GGUF")
    assert resolve_model("phi", models).path == (models / "phi.gguf").resolve()
    assert resolve_model(str(models / "phi.gguf"), Path("/nowhere")).name == "phi"
    with pytest.raises(ModelNotFoundError, match="no model named"):
        resolve_model("llama", models)
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_model(str(tmp_path / "missing.gguf"), models)
    with pytest.raises(ModelNotFoundError, match="is a folder"):
        resolve_model(str(models) + "/", models)
    names = [m.name for m in list_models(models)]
    assert names == ["smollm2", "phi"]


def test_only_the_askgpt_package_is_installed_at_top_level(tmp_path: Path) -> None:
    """The folders install as askgpt.cli, askgpt.runtime, ...; never as top-level packages."""
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps({n: u.find_spec(n) is not None for n in "
        "['cli', 'runtime', 'vision', 'convert', 'askgpt.cli', 'askgpt.runtime', 'askgpt.vision', 'askgpt.convert']}))"
    )
    # Run from an empty folder so only what pip installed is importable.
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, check=True)
    found = json.loads(out.stdout)
    assert found == {"cli": False, "runtime": False, "vision": False, "convert": False,
                     "askgpt.cli": True, "askgpt.runtime": True, "askgpt.vision": True, "askgpt.convert": True}
