"""`askgpt config`: the config file read, changed key by key, and explained.

Values typed on the command line are parsed by the key's type and checked against
the one table of keys (settings.KEYS) the loader checks the file with, before the
file is changed. Changes go through tomlkit, so the user's comments (whole-line and
inline), key order and formatting stay as they were; the file is written atomically
and privately (0600: it may hold an API key).

A broken file does not lock the user out of these commands: `show` reports what is
wrong and where, `set` and `unset` work on a file with bad values (that is how one is
fixed) and refuse, naming the line and column, only a file that is not TOML at all;
`edit` keeps the last valid file unless the user confirms an invalid one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from askgpt.runtime.errors import AskgptError, UsageError
from askgpt.runtime.files import atomic_write_bytes, private_folder
from askgpt.runtime.store.settings import (
    ENV_OVERRIDES,
    KEYS,
    SECRET_KEYS,
    ConfigSyntaxError,
    Defaults,
    Kind,
    Paths,
    check_value,
    config_problems,
    parse_config_text,
    toml_value,
)

DRAFT_NAME = "config.draft.toml"  # what `config edit` opens
REJECTED_NAME = "config.rejected.toml"  # an invalid edit the user did not confirm


@dataclass(frozen=True)
class Effective:
    key: str
    value: object
    source: str  # "environment (NAME)", "config file" or "default"


@dataclass(frozen=True)
class ConfigState:
    """The config file as read: the values askgpt can use and what is wrong with it."""

    path: Path
    values: dict[str, object]  # the keys whose values are good
    problems: dict[str, str]  # key -> what is wrong with its value (or that it is not a key)
    syntax_error: ConfigSyntaxError | None = None

    @property
    def ok(self) -> bool:
        return self.syntax_error is None and not self.problems

    def messages(self) -> list[str]:
        """One line per problem, each naming the file (and the line and column of a syntax error)."""
        if self.syntax_error is not None:
            return [self.syntax_error.message]
        return [f"{self.path}: '{key}' {problem}" for key, problem in sorted(self.problems.items())]


@dataclass(frozen=True)
class Changed:
    """What `set_value` wrote, and what is still wrong with the file."""

    key: str
    value: object
    remaining: tuple[str, ...] = ()

    def line(self) -> str:
        if self.key in SECRET_KEYS:
            return f"{self.key} set (not shown)"  # never echo a secret
        return f"{self.key} = {toml_value(self.value)}"


def inspect(path: Path) -> ConfigState:
    """Read ``path`` without stopping at the first problem."""
    if not path.is_file():
        return ConfigState(path, {}, {})
    try:
        data = parse_config_text(_read_text(path), f"config file {path}")
    except ConfigSyntaxError as exc:
        return ConfigState(path, {}, {}, exc)
    problems = config_problems(data)
    return ConfigState(path, {k: v for k, v in data.items() if k not in problems}, problems)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigSyntaxError(f"cannot read config file {path}: {exc}", line=None, column=None,
                                hint="fix or delete it") from exc


def _known(key: str) -> None:
    if key not in KEYS:
        raise UsageError(f"unknown key {key!r}", hint=f"known keys: {', '.join(KEYS)}")


def parse_value(key: str, text: str) -> object:
    """``text`` as the type ``key`` takes in the file, checked against its range and form."""
    _known(key)
    kind = KEYS[key].kind
    value: object
    if kind is Kind.BOOL:
        lowered = text.strip().lower()
        if lowered in {"true", "yes", "on", "1"}:
            value = True
        elif lowered in {"false", "no", "off", "0"}:
            value = False
        else:
            raise UsageError(f"'{key}' takes true or false, not {text!r}")
    elif kind is Kind.INT:
        try:
            value = int(text)
        except ValueError:
            raise UsageError(f"'{key}' takes a whole number, not {text!r}") from None
    elif kind is Kind.NUMBER:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"'{key}' takes a number, not {text!r}") from None
    else:
        value = text
    check_value(key, value, "config set")
    return value


def _checked_model(paths: Paths, spec: str) -> str:
    """A model name must name a model askgpt knows, a path an existing file (stored absolute,
    so the config means the same file from any folder)."""
    from askgpt.runtime.models.registry import resolve_model

    try:
        resolve_model(spec, paths.models_dir)
    except AskgptError as exc:
        raise UsageError(f"config set model: {exc.message}", hint=exc.hint) from exc
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.is_file() else spec


def _document(paths: Paths) -> Any:
    """The file as a tomlkit document (comments and layout kept); refuses a file that is
    not TOML, naming the line and column."""
    import tomlkit
    from tomlkit.exceptions import ParseError

    path = paths.config_file
    if not path.is_file():
        return tomlkit.document()
    text = _read_text(path)
    try:
        parse_config_text(text, f"config file {path}")
    except ConfigSyntaxError as exc:
        raise ConfigSyntaxError(f"cannot change {path}: {exc.message}", line=exc.line, column=exc.column,
                                hint="fix that line first (askgpt config edit)") from exc
    try:
        return tomlkit.parse(text)
    except ParseError as exc:  # tomllib read it, tomlkit did not: still the user's to fix
        raise ConfigSyntaxError(f"cannot change {path}: {exc}", line=exc.line, column=exc.col,
                                hint="fix that line first (askgpt config edit)") from exc


def set_value(paths: Paths, key: str, text: str) -> Changed:
    value = parse_value(key, text)
    if key == "model":
        value = _checked_model(paths, str(value))
    doc = _document(paths)
    import tomlkit

    new = tomlkit.item(value)
    if key in doc:
        old = doc.item(key)
        # Keep the line's own comment and spacing ("ctx = 8192  # for work docs").
        new.trivia.indent, new.trivia.comment_ws = old.trivia.indent, old.trivia.comment_ws
        new.trivia.comment, new.trivia.trail = old.trivia.comment, old.trivia.trail
    doc[key] = new
    _write(paths, tomlkit.dumps(doc))
    state = inspect(paths.config_file)
    return Changed(key, value, tuple(state.messages()))


def unset_value(paths: Paths, key: str) -> bool:
    """Remove ``key`` from the file; False when it was not there. A key askgpt does not
    know can be removed too when the file has it (a misspelt one)."""
    doc = _document(paths)
    if key not in doc:
        _known(key)
        return False
    import tomlkit

    del doc[key]
    _write(paths, tomlkit.dumps(doc))
    return True


def effective(paths: Paths, env: Mapping[str, str]) -> tuple[list[Effective], ConfigState]:
    """Every key's value and where it comes from (a command-line option, not known here,
    would override each of them for one call), and the file's state: values that are
    wrong are reported there and shown as what applies instead."""
    state = inspect(paths.config_file)
    out = []
    for f in fields(Defaults):
        var = ENV_OVERRIDES.get(f.name)
        if var and env.get(var):
            row = Effective(f.name, env[var], f"environment ({var})")
        elif f.name in state.values:
            row = Effective(f.name, state.values[f.name], "config file")
        else:
            row = Effective(f.name, f.default, "default")
        if f.name in SECRET_KEYS and row.value:
            row = Effective(row.key, "(set, not shown)", row.source)
        out.append(row)
    return out, state


@dataclass(frozen=True)
class Edited:
    saved: bool  # the edit is now the config file
    unchanged: bool = False
    problems: tuple[str, ...] = ()  # what is wrong with the edit (saved only when confirmed)
    rejected: Path | None = None  # where an invalid edit was kept instead


def edit_config(paths: Paths, run_editor: Callable[[Path], None],
                confirm: Callable[[list[str]], bool] | None) -> Edited:
    """Let ``run_editor`` change a private copy of the file, then check it. A valid edit
    replaces the file; an invalid one does only when ``confirm`` says so (None: nobody
    to ask), otherwise the file stays as it was and the edit is kept beside it."""
    private_folder(paths.config_dir, tighten=True)
    path = paths.config_file
    before = path.read_bytes() if path.is_file() else b""
    draft = paths.config_dir / DRAFT_NAME
    atomic_write_bytes(draft, before)
    try:
        run_editor(draft)
        after = draft.read_bytes()
    except BaseException:
        draft.unlink(missing_ok=True)
        raise
    if after == before:
        draft.unlink(missing_ok=True)
        return Edited(saved=False, unchanged=True)
    state = inspect(draft)
    problems = [m.replace(str(draft), path.name) for m in state.messages()]
    if state.ok or (confirm is not None and confirm(problems)):
        atomic_write_bytes(path, after)
        draft.unlink(missing_ok=True)
        return Edited(saved=True, problems=tuple(problems))
    rejected = paths.config_dir / REJECTED_NAME
    atomic_write_bytes(rejected, after)
    draft.unlink(missing_ok=True)
    return Edited(saved=False, problems=tuple(problems), rejected=rejected)


def _write(paths: Paths, text: str) -> None:
    private_folder(paths.config_dir, tighten=True)
    atomic_write_bytes(paths.config_file, text.encode("utf-8"))
