"""Where askgpt keeps its files, and the user's defaults.

Precedence, highest first: command-line option, environment variable,
``config.toml`` in the config folder, built-in default.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import tomllib

from askgpt.runtime.engine.base import CTX_STEP, EngineConfig, round_context
from askgpt.runtime.engine.kv import KV_CACHE_TYPES
from askgpt.runtime.engine.prefix_cache import PrefixCacheConfig
from askgpt.runtime.engine.sampling import SamplingConfig
from askgpt.runtime.errors import UsageError
from askgpt.runtime.models.registry import ModelRef
from askgpt.runtime.prompting.generate import GenerationConfig
from askgpt.runtime.prompting.request import DEFAULT_SYSTEM
from askgpt.runtime.retrieval.kinds import Retrieval

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


def context_size(ctx: int, *, what: str = "--ctx") -> int:
    """``ctx`` as llama.cpp makes it: 0 (the model's training context) stays 0, anything
    else is rounded up to a multiple of `CTX_STEP`; below it is a `UsageError`."""
    if ctx < 0 or 0 < ctx < CTX_STEP:
        raise UsageError(f"{what} must be 0 (the model's training context) or at least {CTX_STEP}, not {ctx}",
                         hint=f"llama.cpp makes a smaller context {CTX_STEP} tokens anyway")
    return round_context(ctx)


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
    log: bool = True  # keep every exchange in the conversation log (runtime.store.log)
    prefix_cache: bool = True  # keep evaluated prompt prefixes on disk (runtime.engine.prefix_cache)
    prefix_cache_mb: int = 2048  # the size bound of that cache
    encoder: str = "auto"  # the image encoder: auto (CLIP when set up), builtin, clip, or a set-up name
    endpoint: str | None = None  # an OpenAI-compatible server to use instead of a local model
    api_key: str | None = None  # its API key (ASKGPT_API_KEY overrides); never shown
    endpoint_timeout: float = 120.0  # seconds to wait for the server
    retrieval: str | None = None  # bm25|semantic|hybrid; None: hybrid where the embedding model is present
    cite: bool = True  # show the evidence the model was given after its answer (--no-cite)
    copy_bias: bool = True  # favour the evidence's own tokens while a retrieved answer is written


@dataclass(frozen=True)
class Settings:
    paths: Paths
    debug: bool
    file_defaults: Defaults  # the config file's values over the built-in ones (built-in only when broken)
    config_error: UsageError | None = None  # what is wrong with the config file, and where
    from_env: frozenset[str] = frozenset()  # the keys an environment variable set (ENV_OVERRIDES)

    @property
    def defaults(self) -> Defaults:
        """The user's defaults. A broken config file raises its error here, so commands that
        only need the folders (logs, models list) still work while asking refuses: a
        setting such as ``log = false`` is never silently dropped."""
        if self.config_error is not None:
            raise UsageError(self.config_error.message, hint=self.config_error.hint)
        return self.file_defaults


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


# Environment variables that override a config key (and are overridden by an option).
ENV_OVERRIDES = {"model": "ASKGPT_MODEL", "endpoint": "ASKGPT_ENDPOINT", "api_key": "ASKGPT_API_KEY"}


class Kind(Enum):
    """A config value's type in TOML, and how it is written on the command line."""

    BOOL = "true or false"
    INT = "a whole number"
    NUMBER = "a number"
    TEXT = "text"


INT32_MAX = 2**31 - 1  # llama.cpp's counts are C ints
# llama.cpp rounds a context up to a multiple of 256; less cannot hold a chat template,
# a question and an answer. 0 asks for the model's training context.
MIN_CTX = CTX_STEP
MAX_CTX = INT32_MAX // CTX_STEP * CTX_STEP  # still a C int once rounded up


def max_threads() -> int:
    """A bound that means the same on every machine (a config file is shared between
    machines of different sizes): more threads than CPUs only slows llama.cpp down, and
    more than this is a typing slip."""
    return 512


def _http_url(value: object) -> str | None:
    from urllib.parse import urlsplit

    text = str(value)
    try:
        parts = urlsplit(text)
    except ValueError:
        return "must be an http:// or https:// URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
        return "must be an http:// or https:// URL, e.g. http://localhost:8080/v1"
    return None


def _not_blank(value: object) -> str | None:
    return "must not be empty" if not str(value).strip() else None


@dataclass(frozen=True)
class KeySpec:
    """One config key: its type and the values it takes. The single table the config file,
    `config set` and the command line's options (`check_value`) are checked against."""

    kind: Kind
    minimum: float | None = None
    maximum: float | Callable[[], float] | None = None
    above_zero: bool = False  # strictly more than 0 (minimum is then unused)
    zero_ok: bool = False  # 0 is allowed below ``minimum`` (ctx: the model's own)
    choices: tuple[str, ...] = ()
    check: Callable[[object], str | None] | None = None  # a form check: the problem, or None
    secret: bool = False  # never printed (config show, config set)

    def upper(self) -> float | None:
        return self.maximum() if callable(self.maximum) else self.maximum

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        upper = self.upper()
        low = ("more than 0" if self.above_zero
               else f"at least {_num(self.minimum)}" if self.minimum is not None else "")
        if self.zero_ok:
            low = f"0 (the model's training context) or {low}"
        high = f"at most {_num(upper)}" if upper is not None else ""
        return " and ".join(x for x in (low, high) if x) or self.kind.value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


KEYS: dict[str, KeySpec] = {
    "model": KeySpec(Kind.TEXT, check=_not_blank),  # `config set` also resolves it (config_file)
    "ctx": KeySpec(Kind.INT, minimum=MIN_CTX, maximum=MAX_CTX, zero_ok=True),
    "max_tokens": KeySpec(Kind.INT, minimum=1, maximum=INT32_MAX),
    "temperature": KeySpec(Kind.NUMBER, minimum=0, maximum=10),
    "repeat_penalty": KeySpec(Kind.NUMBER, above_zero=True, maximum=10),
    "lookup_tokens": KeySpec(Kind.INT, minimum=0, maximum=256),
    "system": KeySpec(Kind.TEXT),
    "threads": KeySpec(Kind.INT, minimum=1, maximum=max_threads),
    "batch": KeySpec(Kind.INT, minimum=1, maximum=INT32_MAX),
    "gpu_layers": KeySpec(Kind.INT, minimum=0, maximum=INT32_MAX),
    "kv_type": KeySpec(Kind.TEXT, choices=KV_CACHE_TYPES),
    "log": KeySpec(Kind.BOOL),
    "prefix_cache": KeySpec(Kind.BOOL),
    "prefix_cache_mb": KeySpec(Kind.INT, minimum=1, maximum=INT32_MAX),
    "encoder": KeySpec(Kind.TEXT, check=_not_blank),
    "endpoint": KeySpec(Kind.TEXT, check=_http_url),
    "api_key": KeySpec(Kind.TEXT, check=_not_blank, secret=True),
    "endpoint_timeout": KeySpec(Kind.NUMBER, above_zero=True, maximum=86400),
    "retrieval": KeySpec(Kind.TEXT, choices=tuple(kind.value for kind in Retrieval)),
    "cite": KeySpec(Kind.BOOL),
    "copy_bias": KeySpec(Kind.BOOL),
}
SECRET_KEYS = frozenset(k for k, spec in KEYS.items() if spec.secret)  # never printed


def value_problem(key: str, value: object) -> str | None:
    """What is wrong with ``value`` for ``key`` (its type, range or form), or None."""
    spec = KEYS[key]
    if spec.kind is Kind.BOOL:
        return None if isinstance(value, bool) else "takes true or false"
    if spec.kind is Kind.TEXT:
        if not isinstance(value, str):
            return "takes text (a quoted string)"
        if spec.choices and value not in spec.choices:
            return f"must be one of {', '.join(spec.choices)}"
        return spec.check(value) if spec.check is not None else None
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            (spec.kind is Kind.INT and not isinstance(value, int)):
        return f"takes {spec.kind.value}"
    if not math.isfinite(value):
        return "must be a finite number"
    upper = spec.upper()
    if spec.above_zero:
        low_ok = value > 0
    else:
        low_ok = spec.minimum is None or value >= spec.minimum or (spec.zero_ok and value == 0)
    if not low_ok or (upper is not None and value > upper):
        return f"must be {spec.describe()}"
    return None


def check_value(key: str, value: object, where: str) -> None:
    """`UsageError` naming ``where`` (a file, an option) when ``value`` is wrong for ``key``."""
    problem = value_problem(key, value)
    if problem is not None:
        raise UsageError(f"{where}: '{key}' {problem}, not {_shown(key, value)}")


def _shown(key: str, value: object) -> str:
    return "the value given" if key in SECRET_KEYS else toml_value(value)


def toml_value(value: object) -> str:
    """``value`` as TOML writes it (true, 0.2, "text"), for messages and `config show`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, int | float):
        return repr(value)
    import json

    # Shown, not written (tomlkit writes the file): a JSON string reads as a TOML basic string.
    return json.dumps(str(value), ensure_ascii=False)


def unknown_keys(data: Mapping[str, object]) -> list[str]:
    return sorted(set(data) - set(KEYS))


class ConfigSyntaxError(UsageError):
    """The config file is not valid TOML (or not readable text); ``line``/``column`` say where."""

    def __init__(self, message: str, *, line: int | None, column: int | None, hint: str | None) -> None:
        super().__init__(message, hint=hint)
        self.line = line
        self.column = column


def parse_config_text(text: str, where: str) -> dict[str, Any]:
    """The TOML in ``text``; `ConfigSyntaxError` with the line and column of a mistake."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        import re

        found = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line, column = (int(found[1]), int(found[2])) if found else (None, None)
        raise ConfigSyntaxError(f"{where} is not valid TOML: {exc}", line=line, column=column,
                                hint="fix it with `askgpt config edit`") from exc


def read_config_file(path: Path) -> dict[str, object]:
    """The file's keys and values, validated; {} when there is no file."""
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigSyntaxError(f"cannot read config file {path}: {exc}", line=None, column=None,
                                hint="fix or delete it") from exc
    data = parse_config_text(text, f"config file {path}")
    validate_config(data, str(path))
    return data


def config_problems(data: Mapping[str, object]) -> dict[str, str]:
    """Every key's problem (unknown keys included), for reports that go on past the first."""
    problems = {key: "is not a config key" for key in unknown_keys(data)}
    for key, value in data.items():
        if key in KEYS and (problem := value_problem(key, value)) is not None:
            problems[key] = problem
    return problems


def validate_config(data: Mapping[str, object], where: str) -> None:
    unknown = unknown_keys(data)
    if unknown:
        raise UsageError(f"unknown key(s) in {where}: {', '.join(unknown)}", hint=f"known keys: {', '.join(KEYS)}")
    for key, value in data.items():
        check_value(key, value, where)


def _read_config(path: Path) -> Defaults:
    return Defaults(**read_config_file(path))  # type: ignore[arg-type]


def prefix_cache_config(settings: Settings) -> PrefixCacheConfig | None:
    """Where and how large the prefix cache is; None when the config turns it off."""
    d = settings.defaults
    if not d.prefix_cache:
        return None
    return PrefixCacheConfig(folder=settings.paths.cache_dir / "prefix", max_bytes=d.prefix_cache_mb * 2**20)


def vector_cache_folder(settings: Settings) -> Path:
    """Where long documents' sentence vectors are kept, so a second question embeds nothing again."""
    return settings.paths.cache_dir / "vectors"


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
        n_ctx=context_size(ctx) if ctx is not None else context_size(d.ctx, what="the config's ctx"),
        n_threads=threads or d.threads,
        n_batch=batch or d.batch,
        n_gpu_layers=gpu_layers if gpu_layers is not None else d.gpu_layers,
        kv_type=kv_type or d.kv_type,
        native_log=native_log,
        # The built-in model ships with askgpt; any other file's first load is tried in
        # a child process (runtime.engine.guard).
        trial_cache=None if ref.builtin else settings.paths.cache_dir,
        prefix_cache=prefix_cache_config(settings) if prefix_cache else None,
        api_key=d.api_key, request_timeout=float(d.endpoint_timeout),
    )


def generation_config(settings: Settings, *, max_tokens: int | None = None, temperature: float | None = None,
                      seed: int | None = None, lookup: int | None = None) -> GenerationConfig:
    """How to generate: each value given here, else the user's default. The one place a
    `GenerationConfig` is built from options (ask, chat and the Python API); an explicit 0
    is checked as given, never taken for "the default"."""
    d = settings.defaults
    return GenerationConfig(
        max_tokens=d.max_tokens if max_tokens is None else max_tokens,
        sampling=SamplingConfig(
            temperature=d.temperature if temperature is None else temperature,
            repeat_penalty=d.repeat_penalty,
            seed=seed,
            lookup_tokens=d.lookup_tokens if lookup is None else lookup,
        ),
    )


def model_ref(settings: Settings, model: str | None, endpoint: str | None = None) -> ModelRef:
    """The model to use. With an endpoint (the one given, else ASKGPT_ENDPOINT, else the
    config's) it is a served model, named only by an explicit ``model`` (the configured
    default names a local file); otherwise the given or the default local model."""
    from askgpt.runtime.models.registry import resolve_model

    endpoint = endpoint or settings.defaults.endpoint
    if endpoint:
        return resolve_model(model, settings.paths.models_dir, endpoint=endpoint)
    return resolve_model(model or settings.defaults.model, settings.paths.models_dir)


def load_settings(env: Mapping[str, str]) -> Settings:
    paths = resolve_paths(env)
    error: UsageError | None = None
    try:
        defaults = _read_config(paths.config_file)
    except UsageError as exc:
        defaults, error = Defaults(), exc
    # Each overridden key holds a string.
    overrides: dict[str, Any] = {key: env[var] for key, var in ENV_OVERRIDES.items() if env.get(var)}
    defaults = replace(defaults, **overrides)
    return Settings(paths=paths, debug=truthy(env.get("ASKGPT_DEBUG")), file_defaults=defaults,
                    config_error=error, from_env=frozenset(overrides))
