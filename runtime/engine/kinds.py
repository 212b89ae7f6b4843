"""Engine kinds: which engine runs a model, decided in this one place.

A model is either a GGUF file that llama.cpp runs in this process, or a model an
OpenAI-compatible server runs (``-m`` names a served model, or ``--endpoint`` is given).
`ENGINE_KINDS` is the table: the first row whose ``matches`` accepts a `ModelRef` loads it.
Everything that differs between the kinds (a prefix cache on disk, a first-load guard, an
mmproj read in this process) asks `kind_of(ref).local`, never the endpoint itself.
Another engine is one more row, added by `register` (or by a package's ``askgpt.engines``
entry point: a callable returning an `EngineKind`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from askgpt.runtime.engine.base import Engine, EngineConfig

if TYPE_CHECKING:
    from askgpt.runtime.models.registry import ModelRef

EngineFactory = Callable[["ModelRef", EngineConfig], Engine]


@dataclass(frozen=True)
class EngineKind:
    name: str
    matches: Callable[[ModelRef], bool]
    load: EngineFactory
    # Runs in this process on a local file: the file can be checked, cached and guarded.
    local: bool


def _load_served(ref: ModelRef, config: EngineConfig) -> Engine:
    from askgpt.runtime.engine.served import RemoteConfig, RemoteEngine

    return RemoteEngine(RemoteConfig(ref.endpoint or "", ref.remote_model, config.api_key, config.request_timeout,
                                     config.n_ctx))


def _load_llama(ref: ModelRef, config: EngineConfig) -> Engine:
    from askgpt.runtime.engine.llama.engine import load_llama_engine

    return load_llama_engine(ref, config)


ENGINE_KINDS: list[EngineKind] = [
    EngineKind("served", lambda ref: ref.endpoint is not None, _load_served, local=False),
    EngineKind("llama.cpp", lambda ref: True, _load_llama, local=True),
]
_plugins_loaded = False


def register(kind: EngineKind) -> None:
    """Add an engine kind, tried before the built-in ones."""
    ENGINE_KINDS.insert(0, kind)


def _load_plugins() -> None:
    """Engine kinds other packages declare (entry point group ``askgpt.engines``), once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for point in entry_points(group="askgpt.engines"):
        register(point.load()())


def kind_of(ref: ModelRef) -> EngineKind:
    _load_plugins()
    return next(kind for kind in ENGINE_KINDS if kind.matches(ref))


def is_local(ref: ModelRef) -> bool:
    """Whether ``ref`` runs in this process (a GGUF file) rather than on a server."""
    return kind_of(ref).local


def load_engine(ref: ModelRef, config: EngineConfig) -> Engine:
    """The engine for ``ref``, of the first kind that takes it."""
    return kind_of(ref).load(ref, config)
