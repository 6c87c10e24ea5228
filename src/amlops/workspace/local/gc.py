"""`amlops gc`: free the space of old runs and pipeline versions of the local workspace.

Kept, whatever their age: the last N runs, every run a registered model came from (and so
every model a deployment serves), the runs whose outputs a kept run reused, the last N versions of each
pipeline and every version a kept run or a registered model names. Registered models and deployments
themselves are never collected. Nothing is removed while a run is going (checked in the transaction that
removes the rows): its next step may reuse the outputs of a run gc would remove. Rows go first (one
transaction), folders after, so an interruption leaves at most a folder no row points at; snapshot files are
freed once no snapshot links to them (objects/).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from amlops.errors import AmlopsError
from amlops.workspace.local.db import loads, write_transaction
from amlops.workspace.local.paths import remove_tree

ACTIVE = ("NotStarted", "Running")


@dataclass(frozen=True)
class Item:
    kind: str  # "run" | "pipeline"
    key: tuple[str, ...]  # (run id) | (pipeline name, version)
    path: Path
    size: int

    def __str__(self) -> str:
        what = f"run {self.key[0]}" if self.kind == "run" else f"pipeline {self.key[0]} version {self.key[1]}"
        return f"{what} ({human(self.size)})"


@dataclass
class Plan:
    remove: list[Item] = field(default_factory=list)
    kept: dict[str, str] = field(default_factory=dict)  # what -> why, for what is kept because it is referenced
    objects: list[Path] = field(default_factory=list)  # stored files no remaining snapshot links to
    objects_size: int = 0

    @property
    def freed(self) -> int:
        return sum(item.size for item in self.remove) + self.objects_size

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would remove" if dry_run else "removed"
        lines = [f"{verb} {item}" for item in self.remove]
        lines += [f"keep {what}: {why}" for what, why in self.kept.items()]
        runs = sum(1 for item in self.remove if item.kind == "run")
        lines.append(f"{'would free' if dry_run else 'freed'} {human(self.freed)}: {runs} runs, "
                     f"{len(self.remove) - runs} pipeline versions, {len(self.objects)} stored files")
        return lines


def plan(ws, keep_runs: int, keep_versions: int) -> Plan:
    result = Plan()
    runs = ws.db.execute("SELECT id, status, pipeline_name, pipeline_version, outputs FROM runs "
                         "ORDER BY created_at DESC, rowid DESC").fetchall()
    kept_runs = _kept_runs(ws, runs, keep_runs, result.kept)
    for row in runs:
        if row["id"] not in kept_runs:
            folder = ws.root / "runs" / row["id"]
            result.remove.append(Item("run", (row["id"],), folder, _size(folder)))
    used = {(row["pipeline_name"], row["pipeline_version"]): f"run {row['id']} ran it"
            for row in reversed(runs) if row["id"] in kept_runs}
    for model in ws.db.execute("SELECT name, version, tags FROM models ORDER BY name, version"):
        name, _, version = str(loads(model["tags"]).get("pipeline", "")).partition(":")
        used[(name, version)] = f"model {model['name']}:{model['version']} was trained by it"
    versions = ws.db.execute("SELECT name, version, snapshot FROM pipelines ORDER BY name, created_at DESC, "
                             "rowid DESC").fetchall()
    latest: Counter = Counter()
    for row in versions:
        latest[row["name"]] += 1
        key = (row["name"], row["version"])
        if latest[row["name"]] <= keep_versions:
            continue
        if key in used:
            result.kept[f"pipeline {key[0]} version {key[1]}"] = used[key]
            continue
        folder = ws.root / "snapshots" / row["name"] / row["version"]
        result.remove.append(Item("pipeline", key, folder, 0))
    _snapshot_space(ws, result)
    return result


def collect(ws, chosen: Plan) -> None:
    runs = [item.key[0] for item in chosen.remove if item.kind == "run"]
    versions = [item.key for item in chosen.remove if item.kind == "pipeline"]
    with write_transaction(ws.db):
        _refuse_while_running(ws)
        for run_id in runs:
            ws.db.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
            ws.db.execute("DELETE FROM step_cache WHERE run_id = ?", (run_id,))
            ws.db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        for name, version in versions:
            ws.db.execute("DELETE FROM pipelines WHERE name = ? AND version = ?", (name, version))
    for item in chosen.remove:
        remove_tree(ws.root, item.path)
    for stored in chosen.objects:
        if stored.stat().st_nlink == 1:  # still linked nowhere else (a publish may have linked it since)
            remove_tree(ws.root, stored)


def _refuse_while_running(ws) -> None:
    going = ws.db.execute(f"SELECT id, status FROM runs WHERE status IN {ACTIVE} ORDER BY created_at").fetchone()
    if going is not None:
        raise AmlopsError(f"run {going['id']} is {going['status']}: its steps may reuse outputs gc would remove; run "
                          "`amlops gc` again once it has ended (`--dry-run` lists what it would free)")


def _kept_runs(ws, runs: list, keep_runs: int, kept: dict[str, str]) -> set[str]:
    keep = {row["id"] for row in runs[:keep_runs]}
    keep |= {row["id"] for row in runs if row["status"] in ACTIVE}
    served = {(d["model_name"], d["model_version"]): d["name"] for d in ws.db.execute("SELECT * FROM deployments")}
    for model in ws.db.execute("SELECT name, version, run_id FROM models WHERE run_id IS NOT NULL"):
        deployment = served.get((model["name"], model["version"]))
        why = f"model {model['name']}:{model['version']} was registered from it" + (
            f" (deployment {deployment} serves it)" if deployment else "")
        _keep(model["run_id"], why, keep, kept)
    by_id = {row["id"]: row for row in runs}
    pending = [row["id"] for row in runs if row["id"] in keep]  # newest first, so the reasons are stable
    while pending:  # a kept run's outputs may live in the folder of the run it reused them from
        row = by_id.get(pending.pop(0))
        if row is None:
            continue
        sources = {Path(path).parts[1] for path in loads(row["outputs"]).values()
                   if len(Path(path).parts) > 1 and Path(path).parts[0] == "runs"}
        sources |= {step[0] for step in ws.db.execute(
            "SELECT reused_from FROM steps WHERE run_id = ? AND reused_from IS NOT NULL", (row["id"],))}
        for source in sorted(sources - keep):
            if source in by_id:
                _keep(source, f"run {row['id']} reuses its outputs", keep, kept)
                pending.append(source)
    return keep


def _keep(run_id: str, why: str, keep: set[str], kept: dict[str, str]) -> None:
    kept.setdefault(f"run {run_id}", why)
    keep.add(run_id)


def _snapshot_space(ws, chosen: Plan) -> None:
    """A removed snapshot frees its copied files, and each stored object whose every link it held."""
    links: Counter = Counter()
    inodes = {}
    for item in chosen.remove:
        if item.kind != "pipeline":
            continue
        size = 0
        for file in _files(item.path):
            info = file.stat()
            if info.st_nlink == 1:
                size += info.st_size
            else:
                links[(info.st_dev, info.st_ino)] += 1
        inodes[item] = size
    chosen.remove = [Item(i.kind, i.key, i.path, inodes.get(i, i.size)) for i in chosen.remove]
    for stored in _files(ws.root / "objects"):
        info = stored.stat()
        if links[(info.st_dev, info.st_ino)] == info.st_nlink - 1:
            chosen.objects.append(stored)
            chosen.objects_size += info.st_size


def _files(folder: Path) -> list[Path]:
    """Regular files, not those being written (a publish writes `.<name>.tmp` first)."""
    if not folder.is_dir():
        return []
    return [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()
            and not path.name.startswith(".")]


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in _files(folder))


def human(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"
