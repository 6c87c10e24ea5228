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
