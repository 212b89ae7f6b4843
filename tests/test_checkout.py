"""The test suite itself: how it is started, and what `-m "not model"` promises."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from askgpt.runtime.models.registry import builtin_model
from conftest import REPO


def test_askgpt_is_the_whole_installed_package() -> None:
    import askgpt
    import askgpt.cli.entry
    import askgpt.runtime.prompting.generate  # noqa: F401

    # The checkout's root would shadow the installed package with its bare ./askgpt folder.
    assert all(Path(entry or os.getcwd()).resolve() != REPO for entry in sys.path)
    assert askgpt.Assistant is not None


def test_python_m_pytest_from_the_checkout_root_imports_the_installed_package() -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_checkout.py::test_askgpt_is_the_whole_installed_package"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_an_unmarked_test_that_loads_the_model_in_a_child_is_caught(tmp_path: Path) -> None:
    # This test is not marked `model`, so tests/conftest.py's guard is on: the child is
    # refused before llama.cpp reads the file, and the load is recorded for the guard.
    from askgpt.runtime.engine.llama.tools import BARE_ANSWER_SCRIPT  # llama-cpp-python alone, no askgpt

    record = Path(os.environ["ASKGPT_TEST_NO_MODEL"])
    child = subprocess.run(
        [sys.executable, "-c", BARE_ANSWER_SCRIPT, str(builtin_model().path), "256", "1", "1"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert child.returncode != 0 and "not marked `model`" in child.stderr
    assert record.read_text().split() == [str(builtin_model().path)]
    record.unlink()  # caught as intended: this test itself passes


def test_an_unmarked_test_that_loads_the_model_in_process_is_caught() -> None:
    from askgpt.runtime.engine.base import EngineConfig
    from askgpt.runtime.engine.llama.engine import load_llama_engine
    from askgpt.runtime.errors import ModelLoadError

    record = Path(os.environ["ASKGPT_TEST_NO_MODEL"])
    with pytest.raises(ModelLoadError):  # the guard's refusal, as llama.cpp's would be
        load_llama_engine(builtin_model(), EngineConfig(n_ctx=256))
    assert record.read_text().split() == [str(builtin_model().path)]
    record.unlink()
