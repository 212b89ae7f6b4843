"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half-written one.

Every file askgpt writes (cached encoders, projector fits, converted models)
goes through `atomic_write`: a temporary file in the destination folder,
flushed and fsynced, then renamed over the destination, which POSIX makes
atomic. Readers see the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(path: Path) -> Iterator[BinaryIO]:
    """``with atomic_write(p) as fh: fh.write(...)``; ``p`` appears only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def _temp_prefix(path: Path) -> str:
    # The writer's pid in the name lets a later run tell a dead writer's leftover
    # (kill -9 runs no cleanup) from a file another process is still writing.
    return f".{path.name}.{os.getpid()}."


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete temporary files left beside ``path`` by writers that no longer run."""
    removed = []
    # ".NAME.PID.xxxx.tmp", and the temporaries of files staged as ".NAME.PID.*.tmp"
    for tmp in path.parent.glob(f".*{path.name}.*.tmp"):
        pid_text = tmp.name.split(f"{path.name}.", 1)[1].split(".", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process, or we cannot tell: leave its file
    return True


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as fh:
        fh.write(data)


def atomic_write_with(path: Path, write: Callable[[Path], None]) -> None:
    """For writers that want a path (e.g. onnxruntime's quantizer): ``write(tmp)``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _default_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform can open a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    import hashlib

    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
