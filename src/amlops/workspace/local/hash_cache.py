"""A persistent cache of file content hashes, so an unchanged input is not read again.

A file's hash is reused while its (real path, size, mtime_ns, inode, ctime_ns) are unchanged. The
ctime is the safety net: the kernel sets it on every write, rename and utime, and no user call can set
it back, so a change of content with the size and mtime restored is still seen. A file changed within
RACY_S of being hashed could share its ctime with the change (coarse file system clocks): such an entry
is not stored, and the file is hashed again next time (git's "racy clean" rule).
"""
from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from amlops.workspace.local.db import write_transaction
from amlops.workspace.local.snapshot import content_hash, file_hash, walk

RACY_S = 1.0
SCHEMA = """CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"""


def _signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ino, stat.st_ctime_ns


class HashCache:
    """File hashes keyed by path and stat signature, in a table of the workspace database."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.db.execute(SCHEMA)
        self._fresh: list[tuple] = []

    def file_hash(self, real: Path) -> str:
        before = os.stat(real)
        row = self.db.execute("SELECT size, mtime_ns, inode, ctime_ns, sha256 FROM file_hashes WHERE path = ?",
                              (str(real),)).fetchone()
        if row is not None and tuple(row[:4]) == _signature(before):
            return row[4]
        digest = file_hash(real)
        after = os.stat(real)
        settled = time.time_ns() - after.st_ctime_ns > RACY_S * 1e9
        if _signature(after) == _signature(before) and settled:
            self._fresh.append((str(real), *_signature(after), digest))
        return digest

    def content_hash(self, paths: list[Path], relative_to: Path | None = None) -> str:
        """The same value as snapshot.content_hash, reading only the files that changed; new entries are
        written in one transaction."""
        try:
            return content_hash(paths, relative_to=relative_to, walked=walk(paths), file_hasher=self.file_hash)
        finally:
            self._store()

    def _store(self) -> None:
        if not self._fresh:
            return
        fresh, self._fresh = self._fresh, []
        with write_transaction(self.db):
            self.db.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?)", fresh)
