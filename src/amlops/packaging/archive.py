"""Deterministic zips: the .vsix, and the amlops wheel rewritten so that two builds of the same source are
byte-identical (fixed timestamps and permissions, sorted entries, RECORD regenerated to match)."""
from __future__ import annotations

import base64
import hashlib
import io
import os
import time
import zipfile
from pathlib import Path
from typing import Iterable

ZIP_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can record
_FILE_MODE = 0o644
_EXEC_MODE = 0o755
# Parts that are compressed already (the wheel in every task folder, icons): deflating them again saves under 4 %
# of their size and costs most of the zip's time.
_STORED_SUFFIXES = (".whl", ".png", ".zip", ".gz", ".jpg")


def timestamp() -> tuple[int, int, int, int, int, int]:
    """The entries' time: SOURCE_DATE_EPOCH when set (reproducible-builds.org), else 1980-01-01 00:00:00 UTC."""
    try:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", ZIP_EPOCH))
    except ValueError:
        epoch = ZIP_EPOCH
    return time.gmtime(max(epoch, ZIP_EPOCH))[:6]


def zip_bytes(entries: Iterable[tuple[str, bytes, int]]) -> bytes:
    """A zip of (name, data, mode) entries in the given order, deflated (but parts that are compressed already),
    with fixed time and Unix permissions."""
    buffer = io.BytesIO()
    when = timestamp()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=when)
            info.compress_type = zipfile.ZIP_STORED if name.endswith(_STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, so the permissions below mean the same on every platform
            info.external_attr = (0o100000 | mode) << 16
            archive.writestr(info, data, compresslevel=9)
    return buffer.getvalue()


def normalize_wheel(path: Path) -> Path:
    """Rewrite a wheel deterministically in place: sorted entries with the .dist-info folder last, fixed time and
    permissions, and a RECORD listing every entry's sha256 in that order (so the wheel stays installable)."""
    with zipfile.ZipFile(path) as source:
        infos = [info for info in source.infolist() if not info.is_dir()]
        record = next((i.filename for i in infos if i.filename.endswith(".dist-info/RECORD")), None)
        if record is None:
            raise ValueError(f"{path} has no .dist-info/RECORD: not a wheel")
        files = {info.filename: (source.read(info), _mode(info)) for info in infos if info.filename != record}
    dist_info = record.rsplit("/", 1)[0] + "/"
    names = sorted(files, key=lambda name: (name.startswith(dist_info), name))
    lines = [f"{name},sha256={_digest(files[name][0])},{len(files[name][0])}" for name in names]
    record_data = ("\n".join(lines + [f"{record},,"]) + "\n").encode()
    entries = [(name, *files[name]) for name in names] + [(record, record_data, _FILE_MODE)]
    Path(path).write_bytes(zip_bytes(entries))
    return Path(path)


def _mode(info: zipfile.ZipInfo) -> int:
    return _EXEC_MODE if (info.external_attr >> 16) & 0o111 else _FILE_MODE


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
