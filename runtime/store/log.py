"""The conversation log: every exchange in a SQLite database in the data folder.

What is kept: the prompt, system prompt and examples as sent; documents' and
images' names, sizes and SHA-256 hashes (never their bytes); the model's name,
path and file hash; the options; the answer; token counts, timings and the stop
reason. Exchanges belong to conversations, so `-c/--continue` and `--cid` can
replay earlier turns.

Concurrency: WAL journal and a busy timeout, so two askgpt processes writing at
once both land (tested with parallel writers). Schema changes are numbered
migrations recorded in SQLite's ``user_version``; a database from a newer askgpt
is refused rather than altered. Callers treat any `LogError` as a warning: the log
never stops an answer.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from askgpt.runtime.errors import AskgptError
from askgpt.runtime.files import FileIdentity, private_file, private_folder, sha256_file

DB_NAME = "logs.db"
BUSY_TIMEOUT_MS = 5000

# Each entry moves the schema from version i to i + 1; never edit a shipped one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE conversations (
        id TEXT PRIMARY KEY,
        created REAL NOT NULL,
        model TEXT NOT NULL
    );
    CREATE TABLE exchanges (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL REFERENCES conversations(id),
        created REAL NOT NULL,
        model TEXT NOT NULL,
        model_path TEXT NOT NULL,
        model_sha256 TEXT NOT NULL,
        system TEXT,
        prompt TEXT NOT NULL,
        examples TEXT NOT NULL,   -- JSON [{"input", "output"}]
        documents TEXT NOT NULL,  -- JSON [{"source", "size", "sha256"}]
        images TEXT NOT NULL,     -- JSON [{"source", "size", "sha256"}]
        options TEXT NOT NULL,    -- JSON
        answer TEXT NOT NULL,
        prompt_tokens INTEGER,
        answer_tokens INTEGER,
        prompt_seconds REAL,
        answer_seconds REAL,
        stop_reason TEXT
    );
    CREATE INDEX exchanges_by_conversation ON exchanges(conversation_id, id);
    CREATE VIRTUAL TABLE exchanges_fts USING fts5(
        prompt, answer, content='exchanges', content_rowid='id');
    CREATE TRIGGER exchanges_fts_insert AFTER INSERT ON exchanges BEGIN
        INSERT INTO exchanges_fts(rowid, prompt, answer) VALUES (new.id, new.prompt, new.answer);
    END;
    CREATE TRIGGER exchanges_fts_delete AFTER DELETE ON exchanges BEGIN
        INSERT INTO exchanges_fts(exchanges_fts, rowid, prompt, answer)
        VALUES ('delete', old.id, old.prompt, old.answer);
    END;
    CREATE TABLE file_hashes (
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (path, size, mtime_ns)
    );
    """,
)


class LogError(AskgptError):
    """The log could not be read or written (a warning on the ask path)."""


@dataclass(frozen=True)
class Attachment:
    """A document or image as logged: its name, size and content hash."""

    source: str
    size: int  # bytes
    sha256: str

    @classmethod
    def of_bytes(cls, source: str, data: bytes) -> Attachment:
        return cls(source, len(data), hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class Exchange:
    """One question and its answer."""

    conversation_id: str
    model: str
    model_path: str
    prompt: str
    answer: str
    system: str | None = None
    examples: tuple[tuple[str, str], ...] = ()
    documents: tuple[Attachment, ...] = ()
    images: tuple[Attachment, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int | None = None
    answer_tokens: int | None = None
    prompt_seconds: float | None = None
    answer_seconds: float | None = None
    stop_reason: str | None = None
    model_sha256: str = ""
    id: int | None = None
    created: float = 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["examples"] = [{"input": i, "output": o} for i, o in self.examples]
        return data


def new_conversation_id() -> str:
    return uuid.uuid4().hex[:12]


class ConversationLog:
    """The database at ``path``; each method opens its own short connection, so a
    locked or damaged file fails one call with `LogError`, never the process."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            _create_private(self.path)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise LogError(f"cannot open the log {self.path}: {exc}") from exc
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            _migrate(conn, self.path)
            yield conn
        except sqlite3.Error as exc:
            raise LogError(f"the log {self.path} failed: {exc}") from exc
        finally:
            conn.close()

    def record(self, exchange: Exchange) -> int:
        """Store ``exchange`` (its model's hash is computed once per file version); returns its id."""
        with self._connect() as conn:
            sha = exchange.model_sha256 or self._model_hash(conn, Path(exchange.model_path))
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT OR IGNORE INTO conversations(id, created, model) VALUES (?, ?, ?)",
                             (exchange.conversation_id, time.time(), exchange.model))
                cur = conn.execute(
                    "INSERT INTO exchanges(conversation_id, created, model, model_path, model_sha256, system,"
                    " prompt, examples, documents, images, options, answer, prompt_tokens, answer_tokens,"
                    " prompt_seconds, answer_seconds, stop_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (exchange.conversation_id, exchange.created or time.time(), exchange.model,
                     exchange.model_path, sha, exchange.system, exchange.prompt,
                     json.dumps([{"input": i, "output": o} for i, o in exchange.examples]),
                     json.dumps([asdict(d) for d in exchange.documents]),
                     json.dumps([asdict(i) for i in exchange.images]),
                     json.dumps(exchange.options, sort_keys=True), exchange.answer,
                     exchange.prompt_tokens, exchange.answer_tokens, exchange.prompt_seconds,
                     exchange.answer_seconds, exchange.stop_reason))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return int(cur.lastrowid or 0)

    def _model_hash(self, conn: sqlite3.Connection, path: Path) -> str:
        try:
            ident = FileIdentity.of(path)
        except OSError:
            return ""
        key = (ident.path, ident.size, ident.mtime_ns)
        row = conn.execute("SELECT sha256 FROM file_hashes WHERE path=? AND size=? AND mtime_ns=?", key).fetchone()
        if row:
            return str(row[0])
        try:
            sha = sha256_file(path)
        except OSError:
            return ""
        conn.execute("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)", (*key, sha))
        return sha

    def recent(self, *, limit: int = 10, query: str | None = None,
               conversation: str | None = None) -> list[Exchange]:
        """Newest first; ``query`` is a full-text search (FTS5) over prompts and answers."""
        sql = "SELECT e.* FROM exchanges e"
        args: list[object] = []
        where = []
        if query:
            sql += " JOIN exchanges_fts f ON f.rowid = e.id"
            where.append("exchanges_fts MATCH ?")
            args.append(_fts_query(query))
        if conversation:
            where.append("e.conversation_id = ?")
            args.append(conversation)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY e.id DESC LIMIT ?"
        args.append(limit)
        with self._connect() as conn:
            return [_exchange(row) for row in conn.execute(sql, args)]

    def get(self, exchange_id: int) -> Exchange | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM exchanges WHERE id = ?", (exchange_id,)).fetchone()
        return _exchange(row) if row else None

    def conversation(self, conversation_id: str) -> list[Exchange]:
        """Its exchanges, oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM exchanges WHERE conversation_id = ? ORDER BY id",
                                (conversation_id,)).fetchall()
        return [_exchange(row) for row in rows]

    def latest_conversation(self) -> str | None:
        with self._connect() as conn:
            row = conn.execute("SELECT conversation_id FROM exchanges ORDER BY id DESC LIMIT 1").fetchone()
        return str(row[0]) if row else None


def _create_private(path: Path) -> None:
    """The log holds prompts and answers: 0600 in a 0700 folder. SQLite creates a new
    database as 0644 (less the umask) but gives its -wal, -shm and -journal files the
    database's own mode, so creating the file first as 0600 covers all of them; files
    from an older askgpt are narrowed."""
    import os

    private_folder(path.parent, tighten=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask narrowed it (0o277 would leave it read-only)
        finally:
            os.close(fd)
    except FileExistsError:
        for extra in ("", "-wal", "-shm", "-journal"):
            private_file(path.with_name(path.name + extra))


def _fts_query(text: str) -> str:
    # Each word as a quoted FTS5 string: a user's "-" or ":" is text, not query syntax.
    words = [w.replace('"', '""') for w in text.split()]
    return " ".join(f'"{w}"' for w in words) or '""'


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise LogError(f"the log {path} was written by a newer askgpt (schema {version})",
                       hint="upgrade askgpt, or move the file away")
    for number in range(version, len(MIGRATIONS)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated while this one waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] == number:
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> Sequence[str]:
    """Split a migration into statements (triggers hold ';' inside BEGIN ... END)."""
    out, current = [], ""
    for line in script.splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    return [s for s in out if s.rstrip(";").strip()]


def _exchange(row: sqlite3.Row) -> Exchange:
    return Exchange(
        id=row["id"], created=row["created"], conversation_id=row["conversation_id"], model=row["model"],
        model_path=row["model_path"], model_sha256=row["model_sha256"], system=row["system"],
        prompt=row["prompt"], answer=row["answer"],
        examples=tuple((e["input"], e["output"]) for e in json.loads(row["examples"])),
        documents=tuple(Attachment(**d) for d in json.loads(row["documents"])),
        images=tuple(Attachment(**i) for i in json.loads(row["images"])),
        options=json.loads(row["options"]), prompt_tokens=row["prompt_tokens"],
        answer_tokens=row["answer_tokens"], prompt_seconds=row["prompt_seconds"],
        answer_seconds=row["answer_seconds"], stop_reason=row["stop_reason"],
    )
