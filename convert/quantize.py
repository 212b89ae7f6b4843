"""GGUF -> smaller GGUF through llama.cpp's own quantizer, never leaving a partial file.

The output is written to a temporary file beside the destination, re-opened
and checked (every tensor of the input is there, with its shape), and only
then renamed into place; free space is checked first. The quantizer is a
blocking native call, so it runs in a worker thread: Ctrl-C stops the wait at
once, and the temporary file is removed.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from askgpt.runtime.errors import AskgptError, ExitCode
from askgpt.runtime.files import atomic_write_with
from askgpt.runtime.system import peak_rss_mb

from .gguf_file import GgufSummary, read_summary
from .types import OutputType

Quantizer = Callable[[Path, Path, int], None]  # (src, dst, ftype); runtime.llama_engine.quantize_gguf


class ConvertError(AskgptError):
    """A conversion that cannot be done: no room, an unwritable folder, a bad result."""

    exit_code = ExitCode.RUNTIME_ERROR


@dataclass(frozen=True)
class ConvertSummary:
    source: GgufSummary
    output: GgufSummary
    type: OutputType
    seconds: float
    peak_rss_mb: float

    def lines(self) -> list[str]:
        src, out = self.source, self.output
        types = ", ".join(f"{k} x{v}" for k, v in sorted(out.tensor_types().items()))
        return [
            f"{src.path.name} -> {out.path.name} ({self.type.name})",
            f"size: {src.size / 1e6:,.1f} MB -> {out.size / 1e6:,.1f} MB ({out.size / src.size:.0%})",
            f"bits per weight: {src.bits_per_weight:.2f} -> {out.bits_per_weight:.2f} "
            f"({out.n_params / 1e6:,.1f}M parameters)",
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
    if not folder.is_dir():
        raise ConvertError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise ConvertError(f"cannot write to {folder}", hint="choose another output path")


def verify(source: GgufSummary, written: Path) -> GgufSummary:
    """The written file must hold every tensor of the source, with the same shape."""
    out = read_summary(written)
    want = {t.name: t.shape for t in source.tensors}
    got = {t.name: t.shape for t in out.tensors}
    if want != got:
        missing = sorted(set(want) - set(got))[:3]
        raise ConvertError(f"the quantized file does not match its source (missing or reshaped: {missing})")
    return out


def _run_interruptibly(work: Callable[[], None]) -> None:
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


def quantize(src: Path, dst: Path, out_type: OutputType, quantizer: Quantizer, *,
             force: bool = False) -> ConvertSummary:
    source = read_summary(src)
    dst = dst.expanduser()
    if dst.exists() and not force:
        raise ConvertError(f"{dst} exists", hint="pass --force to replace it")
    if dst.resolve() == src.resolve():
        raise ConvertError("the output would overwrite the input", hint="choose another output path")
    folder = dst.parent if str(dst.parent) else Path(".")
    check_writable(folder)
    estimate = int(source.n_params * max(out_type.bits, 4.0) / 8 * 1.15) + (8 << 20)
    check_free_space(folder, estimate)
    started = time.perf_counter()

    def write(tmp: Path) -> None:
        _run_interruptibly(lambda: quantizer(src, tmp, out_type.ftype))
        verify(source, tmp)

    atomic_write_with(dst, write)
    output = read_summary(dst)
    return ConvertSummary(source, output, out_type, time.perf_counter() - started, peak_rss_mb())
