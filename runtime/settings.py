"""Where askgpt keeps its files, and the user's defaults.

Precedence, highest first: command-line option, environment variable,
``config.toml`` in the config folder, built-in default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import tomllib

from .engine import EngineConfig
from .errors import UsageError
from .models import ModelRef
from .prefix_cache import PrefixCacheConfig
from .prompt import DEFAULT_SYSTEM

APP_NAME = "askgpt"


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def templates_dir(self) -> Path:
        return self.config_dir / "templates"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs.db"

    @property
    def models_dir(self) -> Path:
        """Where `-m NAME` looks for NAME.gguf (besides the built-in model)."""
        return self.data_dir / "models"


def resolve_paths(env: Mapping[str, str]) -> Paths:
    """The platform's user folders, or all three under ``$ASKGPT_HOME``."""
    home = env.get("ASKGPT_HOME")
    if home:
        root = Path(home).expanduser()
        return Paths(root / "config", root / "data", root / "cache")
    import platformdirs

    return Paths(
        Path(platformdirs.user_config_dir(APP_NAME)),
        Path(platformdirs.user_data_dir(APP_NAME)),
        Path(platformdirs.user_cache_dir(APP_NAME)),
    )


KV_CACHE_TYPES = ("f16", "q8_0", "f32")


@dataclass(frozen=True)
class Defaults:
    """Values a user may set once in config.toml instead of on every call."""

    model: str | None = None
    ctx: int = 4096
    max_tokens: int = 512
    temperature: float = 0.2
    repeat_penalty: float = 1.05
    lookup_tokens: int = 0  # prompt-lookup decoding's draft length (greedy only); 0 = off
    system: str | None = None
    threads: int | None = None  # None: the number of physical cores
    batch: int = 512
    gpu_layers: int | None = None  # None: all where llama.cpp has a GPU backend
    kv_type: str = "f16"
    log: bool = True  # keep every exchange in the conversation log (runtime.history)
    prefix_cache: bool = True  # keep evaluated prompt prefixes on disk (runtime.prefix_cache)
    prefix_cache_mb: int = 2048  # the size bound of that cache
    encoder: str = "auto"  # the image encoder: auto (CLIP when set up), builtin, clip, or a set-up name
    endpoint: str | None = None  # an OpenAI-compatible server to use instead of a local model
    api_key: str | None = None  # its API key (ASKGPT_API_KEY overrides); never shown
    endpoint_timeout: float = 120.0  # seconds to wait for the server


@dataclass(frozen=True)
class Settings:
    paths: Paths
    defaults: Defaults
    debug: bool


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


# The type of each key's value in config.toml.
# Environment variables that override a config key (and are overridden by an option).
ENV_OVERRIDES = {"model": "ASKGPT_MODEL", "endpoint": "ASKGPT_ENDPOINT", "api_key": "ASKGPT_API_KEY"}
SECRET_KEYS = frozenset({"api_key"})  # never printed by `config show`

KEY_TYPES: dict[str, type | tuple[type, ...]] = {
    "model": str, "system": str, "ctx": int, "max_tokens": int, "temperature": (int, float),
    "repeat_penalty": (int, float), "lookup_tokens": int, "threads": int, "batch": int, "gpu_layers": int,
    "log": bool, "kv_type": str, "prefix_cache": bool, "prefix_cache_mb": int, "encoder": str,
    "endpoint": str, "api_key": str, "endpoint_timeout": (int, float),
}


def read_config_file(path: Path) -> dict[str, object]:
    """The file's keys and values, validated; {} when there is no file."""
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config file {path}: {exc}", hint="fix or delete it") from exc
    validate_config(data, str(path))
    return data


def validate_config(data: Mapping[str, object], where: str) -> None:
    known = {f.name for f in fields(Defaults)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise UsageError(f"unknown key(s) in {where}: {', '.join(unknown)}", hint=f"known keys: {', '.join(known)}")
    for key, value in data.items():
        expected = KEY_TYPES[key]
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise UsageError(f"{where}: '{key}' has the wrong type ({type(value).__name__})")
    if data.get("kv_type", "f16") not in KV_CACHE_TYPES:
        raise UsageError(f"{where}: 'kv_type' must be one of {', '.join(KV_CACHE_TYPES)}")
    for key in ("threads", "batch", "prefix_cache_mb", "ctx", "max_tokens"):
        if key in data and data[key] < (0 if key == "ctx" else 1):  # type: ignore[operator]
            raise UsageError(f"{where}: '{key}' must be at least {0 if key == 'ctx' else 1}")
    for key in ("gpu_layers", "lookup_tokens", "temperature"):
        if data.get(key, 0) < 0:  # type: ignore[operator]
            raise UsageError(f"{where}: '{key}' must be 0 or more")
    if data.get("endpoint_timeout", 1) <= 0:  # type: ignore[operator]
        raise UsageError(f"{where}: 'endpoint_timeout' must be more than 0")
    if data.get("repeat_penalty", 1) <= 0:  # type: ignore[operator]
        raise UsageError(f"{where}: 'repeat_penalty' must be more than 0")


def _read_config(path: Path) -> Defaults:
    return Defaults(**read_config_file(path))  # type: ignore[arg-type]


def prefix_cache_config(settings: Settings) -> PrefixCacheConfig | None:
    """Where and how large the prefix cache is; None when the config turns it off."""
    d = settings.defaults
    if not d.prefix_cache:
        return None
    return PrefixCacheConfig(folder=settings.paths.cache_dir / "prefix", max_bytes=d.prefix_cache_mb * 2**20)


def system_prompt(settings: Settings, given: str | None) -> str | None:
    """The system prompt to send: the one given (-s, system=), else the config's, else
    askgpt's default. An empty one means none (the model template's own default applies)."""
    d = settings.defaults.system
    chosen = given if given is not None else (d if d is not None else DEFAULT_SYSTEM)
    return chosen or None


def engine_config(settings: Settings, ref: ModelRef, *, ctx: int | None = None, threads: int | None = None,
                  batch: int | None = None, gpu_layers: int | None = None, kv_type: str | None = None,
                  native_log: Callable[[str], None] | None = None, prefix_cache: bool = True) -> EngineConfig:
    """How to load ``ref``: each value given here, else the user's default (config file)."""
    d = settings.defaults
    return EngineConfig(
        n_ctx=ctx if ctx is not None else d.ctx,
        n_threads=threads or d.threads,
        n_batch=batch or d.batch,
        n_gpu_layers=gpu_layers if gpu_layers is not None else d.gpu_layers,
        kv_type=kv_type or d.kv_type,
        native_log=native_log,
        # The built-in model ships with askgpt; any other file's first load is tried in
        # a child process (runtime.model_guard).
        trial_cache=None if ref.builtin else settings.paths.cache_dir,
        prefix_cache=prefix_cache_config(settings) if prefix_cache else None,
        api_key=d.api_key, request_timeout=float(d.endpoint_timeout),
    )


def model_ref(settings: Settings, model: str | None, endpoint: str | None = None) -> ModelRef:
    """The model to use. With an endpoint (the one given, else ASKGPT_ENDPOINT, else the
    config's) it is a served model, named only by an explicit ``model`` (the configured
    default names a local file); otherwise the given or the default local model."""
    from .models import resolve_model

    endpoint = endpoint or settings.defaults.endpoint
    if endpoint:
        return resolve_model(model, settings.paths.models_dir, endpoint=endpoint)
    return resolve_model(model or settings.defaults.model, settings.paths.models_dir)


def load_settings(env: Mapping[str, str]) -> Settings:
    paths = resolve_paths(env)
    defaults = _read_config(paths.config_file)
    # Each overridden key holds a string.
    overrides: dict[str, Any] = {key: env[var] for key, var in ENV_OVERRIDES.items() if env.get(var)}
    defaults = replace(defaults, **overrides)
    return Settings(paths=paths, defaults=defaults, debug=truthy(env.get("ASKGPT_DEBUG")))
