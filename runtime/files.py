"""Writing files so that a crash, Ctrl-C or a full disk never leaves a half-written one.

Every file askgpt writes (cached encoders, projector fits, converted models)
goes through `atomic_write`: a temporary file in the destination folder,
flushed and fsynced, then renamed over the destination, which POSIX makes
atomic. Readers see the old file or the new one, never a mix.

Permissions: by default a file is private (0600) and any folder created for it
is 0700, whatever the umask: what askgpt keeps for itself may hold an API key, a
user's documents or what was derived from them (the config, the readline history,
the prefix cache's token ids). Files a user asks for at a path of their choosing
(a converted model) pass ``private=False`` and get the mode a plain ``open()``
would give, ``0666 & ~umask``. The umask is never changed to learn it: the
kernel applies it when the temporary file is created (a process-wide
``os.umask`` dance would race with other threads).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

PRIVATE_FILE = 0o600
PRIVATE_FOLDER = 0o700


def private_folder(folder: Path, *, tighten: bool = False) -> None:
    """Create ``folder`` and any missing parents as 0700. With ``tighten``, an existing
    ``folder`` (askgpt's own, never a user's) also loses group and other access."""
    missing = []
    current = folder
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=PRIVATE_FOLDER)
        except FileExistsError:
            continue  # another process made it meanwhile
        os.chmod(path, PRIVATE_FOLDER)  # mkdir's mode is narrowed by the umask only, never widened: be exact
    if tighten and not missing:
        try:
            mode = stat.S_IMODE(folder.stat().st_mode)
            if mode & 0o077:
                os.chmod(folder, mode & ~0o077)
        except OSError:
            pass  # someone else's folder: the files in it are still 0600


def private_file(path: Path) -> None:
    """Narrow an existing file askgpt owns to 0600 (files written before this rule)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & ~0o077)
    except OSError:
        pass


def _create_temporary(path: Path, *, private: bool) -> tuple[int, Path]:
    """An exclusive new file beside ``path``: 0600, or 0666 narrowed by the umask (by the kernel)."""
    prefix = _temp_prefix(path)
    for _ in range(100):
        tmp = path.parent / f"{prefix}{os.urandom(6).hex()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                         PRIVATE_FILE if private else 0o666)
        except FileExistsError:
            continue
        return fd, tmp
    raise FileExistsError(f"no free temporary name beside {path}")


def _prepare_folder(path: Path, *, private: bool) -> None:
    if private:
        private_folder(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def atomic_write(path: Path, *, private: bool = True) -> Iterator[BinaryIO]:
    """``with atomic_write(p) as fh: fh.write(...)``; ``p`` appears only if the block succeeds,
    as 0600 (``private``, the default) or as ``0666 & ~umask``."""
    _prepare_folder(path, private=private)
    fd, tmp = _create_temporary(path, private=private)
    try:
        with os.fdopen(fd, "wb") as fh:  # owns the descriptor from here, whatever happens next
            if private:
                os.fchmod(fh.fileno(), PRIVATE_FILE)  # exactly 0600, even under an odd umask such as 0o277
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
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


def remove_stale_temporaries(path: Path, *, include_own: bool = False) -> list[Path]:
    """Delete temporary files left beside ``path`` by writers that no longer run (and, with
    ``include_own``, this process's own: a caller cleaning up after an interrupt)."""
    removed = []
    own = str(os.getpid())
    # ".NAME.PID.xxxx.tmp", and the temporaries of files staged as ".NAME.PID.*.tmp"
    for tmp in path.parent.glob(f".*{path.name}.*.tmp"):
        pid_text = tmp.name.split(f"{path.name}.", 1)[1].split(".", 1)[0]
        if not pid_text.isdigit() or (_alive(int(pid_text)) and not (include_own and pid_text == own)):
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


def atomic_write_bytes(path: Path, data: bytes, *, private: bool = True) -> None:
    with atomic_write(path, private=private) as fh:
        fh.write(data)


def atomic_write_with(path: Path, write: Callable[[Path], None], *, private: bool = True) -> None:
    """For writers that want a path (e.g. onnxruntime's quantizer): ``write(tmp)``, then rename.
    The mode is set again after ``write``: a writer may replace the file rather than fill it."""
    _prepare_folder(path, private=private)
    fd, tmp = _create_temporary(path, private=private)
    try:
        # Public: the umask's verdict on 0666, read without changing the umask.
        mode = PRIVATE_FILE if private else stat.S_IMODE(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    try:
        write(tmp)
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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


@dataclass(frozen=True)
class FileIdentity:
    """A file as caches and logs key it: its resolved path, size and modification time.
    Cheap to take (one stat) where hashing gigabytes of weights per run would not be;
    a file rewritten in place gets a new identity."""

    path: str  # resolved
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileIdentity:
        """Raises OSError when ``path`` cannot be stat'ed."""
        st = path.stat()
        return cls(str(path.resolve()), st.st_size, st.st_mtime_ns)

    def joined(self, sep: str) -> str:
        """One string for a key: path, size and mtime_ns with ``sep`` between them."""
        return f"{self.path}{sep}{self.size}{sep}{self.mtime_ns}"
