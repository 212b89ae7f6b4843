"""Loaded by every Python process an unmarked test starts (tests/conftest.py puts this
folder on PYTHONPATH): a real model loaded through llama-cpp-python is recorded in the
file named by ASKGPT_TEST_NO_MODEL and refused, so `pytest -m "not model"` stays true to
its word. The test then fails in tests/conftest.py, whatever the child's exit code."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Any


def _guard(llama: Any) -> None:
    original = llama.Llama.__init__
    if getattr(original, "askgpt_guard", False):
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        record = os.environ.get("ASKGPT_TEST_NO_MODEL")  # read per call: tests/conftest.py sets it per test
        path = kwargs.get("model_path", args[0] if args else "")
        if record and not kwargs.get("vocab_only"):
            try:
                size = os.path.getsize(path)
            except OSError:
                size = 0
            if size >= int(os.environ.get("ASKGPT_TEST_REAL_MODEL_BYTES", "0")):
                with open(record, "a", encoding="utf-8") as out:
                    out.write(f"{path}\n")
                self._stack = contextlib.ExitStack()  # what Llama.__del__ closes, even on a refused load
                raise RuntimeError(f"a test not marked `model` loaded the model {path}")
        original(self, *args, **kwargs)

    __init__.askgpt_guard = True  # type: ignore[attr-defined]
    llama.Llama.__init__ = __init__


class _Finder(importlib.abc.MetaPathFinder):
    """Wraps llama_cpp.Llama as soon as llama_cpp.llama has been executed."""

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != "llama_cpp.llama":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _guard(module)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install() -> None:
    """In this process: now if llama_cpp is already imported, else when it is."""
    if "llama_cpp.llama" in sys.modules:
        _guard(sys.modules["llama_cpp.llama"])
    elif not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def _chain() -> None:
    """Run the sitecustomize this file shadows (a distribution's own), if there is one."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


if __name__ == "sitecustomize":
    install()
    _chain()
