from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.models.registry import builtin_model

REPO = Path(__file__).resolve().parent.parent
ASKGPT_BIN = str(Path(sys.executable).parent / "askgpt")

# `pytest -m "not model"` must not run the real model, in this process or in any Python
# process a test starts. guard_site/sitecustomize.py wraps llama_cpp.Llama (here now, in
# children through PYTHONPATH): during a test not marked `model` a load of a file at least
# half the built-in model's size is recorded and refused, and the test fails below. The
# tiny random models the tests write (kilobytes to a few MB) stay allowed.
GUARD_SITE = Path(__file__).resolve().parent / "guard_site"
REAL_MODEL_BYTES = builtin_model().path.stat().st_size // 2
# Fixtures that load the built-in model (module- or session-scoped, so set up before the
# guard below): a test using one is a model test.
MODEL_FIXTURES = {"real_engine", "ladder", "server"}  # server: test_remote.py's llama-cpp-python server

_spec = importlib.util.spec_from_file_location("askgpt_test_model_guard", GUARD_SITE / "sitecustomize.py")
assert _spec is not None and _spec.loader is not None
_model_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_model_guard)
_model_guard.install()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)


@pytest.fixture(autouse=True)
def no_model_unless_marked(request: pytest.FixtureRequest, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fails a test not marked `model` that loads a real model (see GUARD_SITE)."""
    if request.node.get_closest_marker("model") is not None:
        yield
        return
    record = tmp_path / "model-loads.txt"
    monkeypatch.setenv("ASKGPT_TEST_NO_MODEL", str(record))
    monkeypatch.setenv("ASKGPT_TEST_REAL_MODEL_BYTES", str(REAL_MODEL_BYTES))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(GUARD_SITE), *filter(None, [os.environ.get("PYTHONPATH")])]))
    yield
    if record.exists():
        loads = sorted(set(record.read_text().split("\n")) - {""})
        pytest.fail(f"not marked `model`, but loaded {', '.join(loads)}: mark it @pytest.mark.model", pytrace=False)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ASKGPT_HOME and none of the user's askgpt variables."""
    home = tmp_path / "askgpt-home"
    monkeypatch.setenv("ASKGPT_HOME", str(home))
    for var in ("ASKGPT_MODEL", "ASKGPT_DEBUG", "NO_COLOR"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture(scope="session")
def real_engine() -> Iterator[object]:
    """The built-in SmolLM2 model through llama.cpp, loaded once per session."""
    from askgpt.runtime.engine.llama.engine import load_llama_engine

    engine = load_llama_engine(builtin_model(), EngineConfig(n_ctx=2048))
    yield engine
    engine.close()


def builtin_without(key: str, folder: Path) -> Path:
    """The built-in model with one metadata key removed, written by gguf's own tool."""
    out = folder / f"smollm2-without-{key.replace('.', '-')}.gguf"
    subprocess.run(
        [sys.executable, "-m", "gguf.scripts.gguf_new_metadata", "--remove-metadata", key,
         str(builtin_model().path), str(out), "--force"],
        check=True, capture_output=True, timeout=300,
    )
    return out


def run_askgpt(args: list[str], *, input: bytes | None = b"", env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run the installed CLI as a user would (a real process, real stdin/stdout pipes)."""
    full_env = {**os.environ, **(env or {})}
    # The console script pip installed, run from outside the checkout so the
    # installed package (not the source folders) is what gets imported.
    return subprocess.run(
        [ASKGPT_BIN, *args], input=input, capture_output=True,
        env=full_env, timeout=timeout, cwd=REPO / "tests",
    )


def doc_page(page: str) -> str:
    """The text of one page of the docs, as a path from the checkout's root: "README.md" or
    "docs/cli-reference.md" (the README is the front page; each subject has its docs/ page)."""
    return (REPO / page).read_text()


def doc_block(page: str, heading: str) -> list[str]:
    """The command lines of the first fenced block after ``heading`` on ``page`` (see doc_page)."""
    block = doc_page(page).split(heading + "\n", 1)[1].split("```", 2)[1]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.startswith("#")]


def run_readme_lines(lines: list[str], *, cwd: Path, home: Path, replace: dict[str, str] | None = None,
                     env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess[str]]:
    """Each docs command line through bash, as a user would paste it (with ``replace``'s
    stand-ins for paths and URLs that only exist on a user's machine)."""
    full_env = {**os.environ, "ASKGPT_HOME": str(home), "PATH": f"{Path(ASKGPT_BIN).parent}{os.pathsep}"
                f"{os.environ['PATH']}", **(env or {})}
    results = []
    for line in lines:
        for old, new in (replace or {}).items():
            line = line.replace(old, new)
        results.append(subprocess.run(["bash", "-c", line], cwd=cwd, env=full_env, capture_output=True, text=True,
                                      timeout=300))
    return results
