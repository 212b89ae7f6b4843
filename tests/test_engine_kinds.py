"""Engine kinds: the one table that decides which engine runs a model (runtime/engine/kinds.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import ScriptedEngine

from askgpt.runtime.engine import kinds
from askgpt.runtime.engine.base import EngineConfig
from askgpt.runtime.models.registry import ModelRef


def test_a_file_is_local_and_an_endpoint_is_served() -> None:
    assert kinds.kind_of(ModelRef("m", Path("m.gguf"))).name == "llama.cpp"
    assert kinds.is_local(ModelRef("m", Path("m.gguf")))
    served = ModelRef("s", Path(), endpoint="http://127.0.0.1:9/v1")
    assert kinds.kind_of(served).name == "served" and not kinds.is_local(served)


def test_a_registered_kind_is_chosen_without_editing_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kinds, "ENGINE_KINDS", list(kinds.ENGINE_KINDS))
    engine = ScriptedEngine(answer="from a plugin")
    kinds.register(kinds.EngineKind("scripted", lambda ref: ref.name.startswith("scripted:"),
                                    lambda ref, config: engine, local=False))
    assert kinds.load_engine(ModelRef("scripted:x", Path()), EngineConfig()) is engine
    assert kinds.kind_of(ModelRef("other", Path("o.gguf"))).name == "llama.cpp"  # the rest as before
    assert not kinds.is_local(ModelRef("scripted:x", Path()))
