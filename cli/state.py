"""What every command of one invocation shares (`ctx.obj`): the environment, the settings,
loaded once and only when a command needs them, and the engine factory tests replace."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import typer

from askgpt.runtime.engine.kinds import EngineFactory, load_engine
from askgpt.runtime.store.settings import Paths, Settings, load_settings, resolve_paths


class CliState:
    def __init__(self, env: Mapping[str, str], engine_factory: EngineFactory | None = None) -> None:
        self.env = env
        self._engine_factory = engine_factory

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.env)

    @cached_property
    def paths(self) -> Paths:
        """The folders alone: commands that need no config values do not read the config file."""
        return resolve_paths(self.env)

    @property
    def engine_factory(self) -> EngineFactory:
        return self._engine_factory or load_engine  # which imports llama.cpp only when it loads a model


def state(ctx: typer.Context) -> CliState:
    """The invocation's state, which the root callback put in ``ctx.obj``."""
    found = ctx.find_object(CliState)
    if found is None:
        raise RuntimeError("askgpt's root callback did not run")
    return found
