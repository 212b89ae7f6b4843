"""Sentence vectors kept on disk, so a second question about the same document does not embed
the same sentences again. One SQLite file (write-ahead log: one askgpt reads while another
writes); a row per (model, passage text) hash. A cache that cannot be opened, read or written
is skipped, and a damaged file is deleted: it only saves time. Past MAX_BYTES it starts afresh."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

FILE = "vectors.sqlite3"
MAX_BYTES = 256 << 20  # about 150k sentences of 384 float32


class VectorCache:
    def __init__(self, folder: Path | None, model_key: str) -> None:
        self._model = model_key
        self._db: sqlite3.Connection | None = None
        self._path = None if folder is None else folder / FILE
        self.hits = self.misses = 0
        if self._path is None:
            return
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            if self._path.is_file() and self._path.stat().st_size > MAX_BYTES:
                self._drop()
            self._db = sqlite3.connect(self._path, timeout=2)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS v (k BLOB PRIMARY KEY, vec BLOB)")
        except (OSError, sqlite3.OperationalError):  # no folder, read-only, or locked: not ours to delete
            self._give_up(damaged=False)
        except sqlite3.DatabaseError:  # not a database, or a damaged one
            self._give_up(damaged=True)

    def _key(self, text: str) -> bytes:
        return hashlib.sha256(f"{self._model}\0{text}".encode("utf-8", errors="replace")).digest()

    def get(self, texts: Sequence[str], width: int) -> list[np.ndarray | None]:
        """The cached vector of each text, or None (also for a row of another width)."""
        import numpy as np

        found: list[np.ndarray | None] = [None] * len(texts)
        if self._db is not None:
            try:
                for i, text in enumerate(texts):
                    row = self._db.execute("SELECT vec FROM v WHERE k = ?", (self._key(text),)).fetchone()
                    if row is not None and len(row[0]) == 4 * width:
                        found[i] = np.frombuffer(row[0], dtype=np.float32)
            except sqlite3.OperationalError:
                self._give_up(damaged=False)
                found = [None] * len(texts)
            except sqlite3.DatabaseError:
                self._give_up(damaged=True)
                found = [None] * len(texts)
        self.hits += sum(v is not None for v in found)
        self.misses += sum(v is None for v in found)
        return found

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        import numpy as np

        if self._db is None:
            return
        try:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO v VALUES (?, ?)",
                                     [(self._key(t), v.astype(np.float32).tobytes())
                                      for t, v in zip(texts, vectors, strict=True)])
        except sqlite3.OperationalError:
            pass  # busy (another askgpt writing) or read-only: these vectors are simply not kept
        except sqlite3.DatabaseError:
            self._give_up(damaged=True)

    def _give_up(self, *, damaged: bool) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None
        if damaged:
            self._drop()

    def _drop(self) -> None:
        if self._path is not None:
            _remove(self._path)


def _files(path: Path) -> list[Path]:
    """The database and its write-ahead log and index, those that exist."""
    return [f for f in (Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")) if f.is_file()]


def _remove(path: Path) -> int:
    freed = 0
    for f in _files(path):
        try:
            size = f.stat().st_size
            f.unlink()
            freed += size
        except OSError:
            pass
    return freed


def cache_bytes(folder: Path) -> int:
    """The bytes the vector cache in ``folder`` takes on disk (0 when there is none)."""
    total = 0
    for f in _files(folder / FILE):
        try:
            total += f.stat().st_size
        except OSError:
            pass
    return total


def clear(folder: Path) -> int:
    """Delete the vector cache in ``folder``; returns the bytes freed."""
    return _remove(folder / FILE)
