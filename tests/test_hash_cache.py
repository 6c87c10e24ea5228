"""The file hash cache behind step reuse: an unchanged input is not read again, any change is seen."""
import os
from pathlib import Path

import pytest

from amlops import api
from amlops.workspace.local import hash_cache
from amlops.workspace.local.db import connect
from amlops.workspace.local.hash_cache import HashCache
from amlops.workspace.local.snapshot import content_hash


@pytest.fixture
def counted(monkeypatch) -> list[Path]:
    """Every file the cache actually reads; entries count as settled at once (no racy window)."""
    reads: list[Path] = []
    real_hash = hash_cache.file_hash

    def counting(path: Path) -> str:
        reads.append(Path(path))
        return real_hash(path)

    monkeypatch.setattr(hash_cache, "file_hash", counting)
    monkeypatch.setattr(hash_cache, "RACY_S", -1.0)
    return reads


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x,y\n1,2\n")
    (folder / "sub" / "b.csv").write_text("x,y\n3,4\n")
    return folder


def test_the_cached_hash_equals_the_content_hash_and_unchanged_files_are_not_read(tmp_path: Path, counted):
    folder = _folder(tmp_path)
    cache = HashCache(connect(tmp_path / "db.sqlite"))
    assert cache.content_hash([folder], relative_to=folder.parent) == content_hash([folder], relative_to=folder.parent)
    assert len(counted) == 2
    again = HashCache(connect(tmp_path / "db.sqlite"))  # persistent: a new process sees the entries
    assert again.content_hash([folder], relative_to=folder.parent) == content_hash([folder], relative_to=folder.parent)
    assert len(counted) == 2


def test_a_change_with_the_same_size_and_mtime_restored_is_seen(tmp_path: Path, counted):
    folder = _folder(tmp_path)
    target = folder / "a.csv"
    cache = HashCache(connect(tmp_path / "db.sqlite"))
    before = cache.content_hash([folder])
    stat = target.stat()
    with open(target, "r+b") as handle:  # same inode, same size
        handle.write(b"X")
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    after = cache.content_hash([folder])
    assert after != before and after == content_hash([folder])
    assert counted.count(target.resolve()) == 2


def test_a_file_replaced_by_another_is_seen(tmp_path: Path, counted):
    folder = _folder(tmp_path)
    cache = HashCache(connect(tmp_path / "db.sqlite"))
    before = cache.content_hash([folder])
    replacement = tmp_path / "new.csv"
    replacement.write_text("x,y\n9,9\n")
    os.replace(replacement, folder / "a.csv")
    assert cache.content_hash([folder]) == content_hash([folder]) != before


def test_a_file_written_just_now_is_not_trusted_next_time(tmp_path: Path, monkeypatch):
    """Racy clean: a file changed within the file system's clock tick of being hashed is read again."""
    folder = _folder(tmp_path)
    cache = HashCache(connect(tmp_path / "db.sqlite"))
    cache.content_hash([folder])
    assert cache.db.execute("SELECT COUNT(*) FROM file_hashes").fetchone()[0] == 0


def test_an_unchanged_resubmit_reads_no_input_and_a_changed_input_reruns(workspace, mini_project: Path, counted):
    published = api.publish(workspace, mini_project / "pipeline.yml")
    first = api.submit(workspace, "mini-pipeline")
    counted.clear()
    second = api.submit(workspace, "mini-pipeline")
    assert [s.reused_from for s in second.steps] == [first.id, first.id]
    assert counted == []
    data = Path(published.snapshot).parent / "data" / "numbers.csv"
    stat = data.stat()
    content = data.read_bytes()
    data.write_bytes(content[:-2] + (b"7" if content[-2:-1] != b"7" else b"8") + content[-1:])
    os.utime(data, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = api.submit(workspace, "mini-pipeline")
    assert changed.steps[0].reused_from is None
    assert data.resolve() in counted
