"""GGUF -> smaller GGUF through llama.cpp's own quantizer, never leaving a partial file.

The source passes the header walk and, the first time askgpt sees it, a load in a
child process (runtime.engine.guard), before llama.cpp's quantizer reads it here.
The output is written to a temporary file beside the destination, re-opened
and checked (every tensor of the input is there, with its shape), and only
then renamed into place; free space is checked first. The quantizer is a
blocking native call, so it runs in a worker thread: Ctrl-C stops the wait at
once, and the temporary file is removed.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.errors import AskgptError, ExitCode
from askgpt.runtime.files import atomic_write_with, remove_stale_temporaries
from askgpt.runtime.models.filetypes import FileType
from askgpt.runtime.models.gguf import GgufSummary, read_summary
from askgpt.runtime.system import peak_rss_mb

Quantizer = Callable[[Path, Path, int], None]  # (src, dst, ftype); runtime.engine.llama.tools.quantize_gguf


class ConvertError(AskgptError):
    """A conversion that cannot be done: no room, an unwritable folder, a bad result."""

    exit_code = ExitCode.RUNTIME_ERROR


@dataclass(frozen=True)
class ConvertSummary:
    source_name: str
    source_size: int  # bytes on disk
    output: GgufSummary
    type: FileType
    seconds: float
    peak_rss_mb: float

    def lines(self) -> list[str]:
        out = self.output
        types = ", ".join(f"{k} x{v}" for k, v in sorted(out.tensor_types().items()))
        source_bits = 8 * self.source_size / max(1, out.n_params)
        return [
            f"{self.source_name} -> {out.path.name} ({self.type.name})",
            f"size: {self.source_size / 1e6:,.1f} MB -> {out.size / 1e6:,.1f} MB ({out.size / self.source_size:.0%})",
            f"bits per weight: {source_bits:.2f} -> {out.bits_per_weight:.2f} ({out.n_params / 1e6:,.1f}M parameters)",
            f"tensor types: {types}",
            f"time: {self.seconds:.1f} s | peak memory: {self.peak_rss_mb:,.0f} MB",
        ]


def check_free_space(folder: Path, needed: int) -> None:
    try:
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise ConvertError(f"cannot check free space in {folder}: {exc.strerror}") from exc
    if free < needed:
        raise ConvertError(f"{folder} has {free / 1e6:,.0f} MB free; the output needs about {needed / 1e6:,.0f} MB",
                           hint="free some space or write elsewhere")


def check_writable(folder: Path) -> None:
    """Tries to create a file there: os.access answers yes to root even where writing
    fails (a read-only mount, /proc)."""
    import tempfile

    if not folder.is_dir():
        raise ConvertError(f"output folder {folder} does not exist")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ConvertError(f"cannot write to {folder}: {exc.strerror}", hint="choose another output path") from exc


def verify(want: dict[str, tuple[int, ...]], written: Path, *, types: dict[str, str] | None = None) -> GgufSummary:
    """The written file must hold exactly the tensors ``want`` names, with those shapes
    (and, when given, those types)."""
    out = read_summary(written)
    got = {t.name: t.shape for t in out.tensors}
    if want != got:
        wrong = sorted(set(want) ^ set(got) or {n for n in want if want[n] != got[n]})[:3]
        raise ConvertError(f"the written file does not match its source (missing, extra or reshaped: {wrong})")
    if types is not None:
        got_types = {t.name: t.type for t in out.tensors}
        wrong = sorted(n for n in types if types[n] != got_types[n])[:3]
        if wrong:
            raise ConvertError(f"the written file has the wrong tensor types: {wrong}")
    return out


def run_interruptibly(work: Callable[[], None]) -> None:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            errors.append(exc)

    worker = threading.Thread(target=target, name="askgpt-quantize", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)  # Ctrl-C lands here within a fraction of a second
    if errors:
        raise errors[0]


def quantize(src: Path, dst: Path, out_type: FileType, quantizer: Quantizer, *,
             force: bool = False, trial_cache: Path | None = None) -> ConvertSummary:
    """With ``trial_cache``, a source file llama.cpp has not read safely before is first
    loaded in a child process (runtime.engine.guard; the quantizer runs in this one)."""
    source = read_summary(src)
    dst = dst.expanduser()
    if dst.exists() and not force:
        raise ConvertError(f"{dst} exists", hint="pass --force to replace it")
    if dst.resolve() == src.resolve():
        raise ConvertError("the output would overwrite the input", hint="choose another output path")
    folder = dst.parent if str(dst.parent) else Path(".")
    check_writable(folder)
    remove_stale_temporaries(dst)
    estimate = int(source.n_params * max(out_type.bits, 4.0) / 8 * 1.15) + (8 << 20)
    check_free_space(folder, estimate)
    if trial_cache is not None:
        from askgpt.runtime.engine.guard import ensure_loads_safely

        ensure_loads_safely(src, trial_cache)  # a crash there is a clean ModelLoadError (exit 4)
    started = time.perf_counter()

    def write(tmp: Path) -> None:
        run_interruptibly(lambda: quantizer(src, tmp, out_type.ftype))
        verify({t.name: t.shape for t in source.tensors}, tmp)

    try:
        atomic_write_with(dst, write, private=False)  # the user's own output: modes as cp would give
    except OSError as exc:  # a full disk, a vanished folder: the destination is untouched
        raise ConvertError(f"writing {dst} failed: {exc.strerror or exc}",
                           hint="free some space or write elsewhere") from exc
    output = read_summary(dst)
    return ConvertSummary(src.name, source.size, output, out_type, time.perf_counter() - started, peak_rss_mb())
