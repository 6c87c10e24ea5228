"""The local workspace's SQLite database: schema, connection settings and JSON columns."""
from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

SCHEMA = """
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT NOT NULL, version TEXT NOT NULL, id TEXT NOT NULL, source TEXT NOT NULL,
    snapshot TEXT NOT NULL, content_hash TEXT NOT NULL, created_at TEXT NOT NULL,
    PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, pipeline_name TEXT NOT NULL, pipeline_version TEXT NOT NULL,
    experiment TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, ended_at TEXT,
    parameters TEXT NOT NULL, tags TEXT NOT NULL, outputs TEXT NOT NULL, metrics TEXT NOT NULL,
    error TEXT, owner_pid INTEGER);
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL, name TEXT NOT NULL, position INTEGER NOT NULL, status TEXT NOT NULL,
    started_at TEXT, ended_at TEXT, reused_from TEXT, log_path TEXT,
    PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS step_cache (
    key TEXT PRIMARY KEY, run_id TEXT NOT NULL, step TEXT NOT NULL, outputs TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    name TEXT NOT NULL, version INTEGER NOT NULL, path TEXT NOT NULL, tags TEXT NOT NULL,
    properties TEXT NOT NULL, run_id TEXT, created_at TEXT NOT NULL, PRIMARY KEY (name, version));
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY, model_name TEXT NOT NULL, model_version INTEGER NOT NULL,
    scoring_uri TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL, pid INTEGER,
    log_path TEXT, error TEXT);
"""


SCHEMA_VERSION = 1  # 1: paths under the workspace are stored relative to its root


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=30000")
    connection.executescript(SCHEMA)
    return connection


def migrate(connection: sqlite3.Connection, root: Path) -> None:
    """Bring a database written by an older amlops up to SCHEMA_VERSION (a new one just gets the number)."""
    if connection.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    with write_transaction(connection):
        if connection.execute("PRAGMA user_version").fetchone()[0] < 1:
            _relative_paths(connection, root)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _relative_paths(connection: sqlite3.Connection, root: Path) -> None:
    """Version 0 stored absolute paths: make those under the workspace relative to it. The workspace may have
    been copied or moved since, so its earlier roots are read off the stored paths themselves."""
    roots = {str(root)} | _earlier_roots(connection)

    def strip(text: str | None) -> str | None:
        for prefix in sorted(roots, key=len, reverse=True):
            if text and text.startswith(prefix + "/"):
                return text[len(prefix) + 1:]
        return text

    for table, column in (("pipelines", "snapshot"), ("steps", "log_path"), ("models", "path"),
                          ("deployments", "log_path")):
        for row in connection.execute(f"SELECT rowid, {column} FROM {table}").fetchall():
            connection.execute(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (strip(row[1]), row[0]))
    for table in ("runs", "step_cache"):
        for row in connection.execute(f"SELECT rowid, outputs FROM {table}").fetchall():
            outputs = {name: strip(path) for name, path in loads(row[1]).items()}
            connection.execute(f"UPDATE {table} SET outputs = ? WHERE rowid = ?", (dumps(outputs), row[0]))


def _earlier_roots(connection: sqlite3.Connection) -> set[str]:
    """Each stored path ends in a part the layout fixes (snapshots/<name>/<version>/...): what comes before it
    is the root the workspace had when the path was stored."""
    queries = (("SELECT snapshot, '/snapshots/' || name || '/' || version || '/' FROM pipelines"),
               ("SELECT path, '/models/' || name || '/' || version FROM models"),
               ("SELECT log_path, '/runs/' || run_id || '/steps/' FROM steps WHERE log_path IS NOT NULL"),
               ("SELECT log_path, '/deployments/' || name || '/' FROM deployments WHERE log_path IS NOT NULL"))
    roots = set()
    for query in queries:
        for path, marker in connection.execute(query).fetchall():
            at = path.rfind(marker) if Path(path).is_absolute() else -1
            if at > 0:
                roots.add(path[:at])
    return roots


@contextmanager
def write_transaction(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE: take the write lock up front so concurrent writers queue instead of failing."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else {}
