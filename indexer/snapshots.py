"""The write side of an index directory: stage, publish, roll back, prune.

A writer works in ``INDEX_DIR/.staging-<random>/`` under an exclusive lock,
then ``publish`` writes the manifest, fsyncs everything, renames the staging
directory to ``snapshots/vNNNNNN`` and atomically replaces ``CURRENT``. A
``kill -9`` at any moment therefore leaves CURRENT on the last complete
snapshot; what it can leave behind is

* a ``.staging-*`` directory or ``CURRENT.tmp``: removed by the next writer;
* a complete snapshot newer than CURRENT (killed between the rename and the
  CURRENT swap): an *orphan*. It stays an ordinary, verifiable version that
  ``set_current`` can switch to and pruning treats like any other; the next
  publish numbers past it (versions are never reused) and names CURRENT, not
  the orphan, as its parent.

Pruning first renames a doomed snapshot to a ``.staging-*`` name, so a kill
mid-delete never leaves a partial directory under ``snapshots/``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from search.errors import SnapshotError
from search.model_card import sha256_file
from search.snapshot_dir import (
    CURRENT,
    MANIFEST,
    current_version,
    list_versions,
    read_manifest,
    snapshot_name,
    snapshots_dir,
    verify_files,
)

log = logging.getLogger(__name__)

LOCK = ".lock"
STAGING_PREFIX = ".staging-"
CURRENT_TMP = CURRENT + ".tmp"

# Index directories whose lock this process holds, so publish can refuse to
# run outside `staging` (flock alone cannot tell us: it is per open file).
_held: set[Path] = set()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _fsync_path(path: Path) -> None:
    """fsync a file or directory by path (directories need O_RDONLY)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SnapshotLock:
    """Exclusive, non-blocking ``flock`` on ``INDEX_DIR/.lock``; a context manager.

    Entering raises SnapshotError when another writer (any process, or
    another lock object in this one) holds it. The kernel drops the lock
    when its holder dies, so a killed writer never leaves it stuck. The lock
    file itself stays: deleting it would let two writers lock two files.
    """

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = Path(index_dir)
        self._fd: int | None = None

    def __enter__(self) -> SnapshotLock:
        self.index_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.index_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            raise SnapshotError(f"another semsearch-index command is writing {self.index_dir}") from err
        self._fd = fd
        _held.add(self.index_dir.resolve())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            _held.discard(self.index_dir.resolve())
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None


def _clean_leftovers(index_dir: Path) -> list[Path]:
    removed: list[Path] = []
    for entry in sorted(index_dir.glob(STAGING_PREFIX + "*")):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
        removed.append(entry)
    tmp = index_dir / CURRENT_TMP
    if tmp.exists():
        tmp.unlink()
        removed.append(tmp)
    return removed


def clean_leftovers(index_dir: Path) -> list[Path]:
    """Remove ``.staging-*`` entries and a stray ``CURRENT.tmp``; return them.

    Takes the writer lock (SnapshotError if another writer holds it), since
    a live writer's staging directory looks exactly like a leftover.
    """
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return []
    with SnapshotLock(index_dir):
        return _clean_leftovers(index_dir)


@contextmanager
def staging(index_dir: Path) -> Iterator[Path]:
    """Lock ``index_dir``, clean leftovers, and yield a fresh empty staging directory.

    Put the data files into it, then call ``publish`` inside the block. On
    exit whatever is left of it is removed (all of it when the block raised;
    the exception propagates). Raises SnapshotError when another writer
    holds the lock. Creates ``index_dir`` if needed.
    """
    index_dir = Path(index_dir)
    with SnapshotLock(index_dir):
        for path in _clean_leftovers(index_dir):
            log.info("removed leftover %s", path)
        work = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=index_dir))
        # mkdtemp makes it 0700; a service running as another user must read the snapshot.
        work.chmod(0o755)
        try:
            yield work
        finally:
            # After a publish the directory was renamed away; nothing to do.
            shutil.rmtree(work, ignore_errors=True)


def _write_synced(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _swap_current(index_dir: Path, version: int) -> None:
    """Point CURRENT at ``version`` atomically: write a temp file, fsync, replace, fsync dir."""
    tmp = index_dir / CURRENT_TMP
    _write_synced(tmp, snapshot_name(version) + "\n")
    os.replace(tmp, index_dir / CURRENT)
    _fsync_path(index_dir)


def _staged_files(staging_dir: Path) -> dict[str, dict[str, Any]]:
    """Hash and fsync every staged file; SnapshotError on anything but plain files."""
    files: dict[str, dict[str, Any]] = {}
    for entry in sorted(staging_dir.iterdir()):
        if entry.name == MANIFEST:
            raise SnapshotError(f"{entry}: {MANIFEST} is written by publish, not by the caller")
        if entry.is_symlink() or not entry.is_file():
            raise SnapshotError(f"{entry}: a snapshot holds plain files only (no subdirectories or links)")
        _fsync_path(entry)
        files[entry.name] = {"sha256": sha256_file(entry), "bytes": entry.stat().st_size}
    return files


def publish(
    index_dir: Path,
    staging_dir: Path,
    manifest: dict[str, Any],
    *,
    keep: int = 5,
    clock: Callable[[], datetime] = _utcnow,
) -> Path:
    """Publish ``staging_dir`` as the next snapshot, make it CURRENT, prune; return its path.

    Writes a copy of ``manifest`` (the caller's dict is left alone) with
    ``version`` (newest on disk + 1), ``parent`` (the CURRENT version or
    None), ``created`` (UTC ISO-8601 from ``clock``) and ``files`` (name ->
    sha256 and bytes of every staged file) set, overriding any caller values.
    Then prunes as ``prune`` does.

    Raises ValueError for ``keep`` < 1; SnapshotError when not called inside
    ``staging(index_dir)``, or when the staging directory holds anything
    but plain files (or its own manifest.json), or CURRENT is broken.
    """
    index_dir, staging_dir = Path(index_dir), Path(staging_dir)
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    if index_dir.resolve() not in _held:
        raise SnapshotError(f"publish to {index_dir} must run inside staging({index_dir})")
    if (
        staging_dir.parent.resolve() != index_dir.resolve()
        or not staging_dir.name.startswith(STAGING_PREFIX)
        or not staging_dir.is_dir()
    ):
        raise SnapshotError(f"{staging_dir} is not a staging directory of {index_dir} (published already?)")

    parent = current_version(index_dir)
    versions = list_versions(index_dir)
    # Past every directory on disk, orphans included, so no name is reused.
    version = (versions[-1] if versions else 0) + 1
    record = {
        **manifest,
        "version": version,
        "parent": parent,
        "created": clock().astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "files": _staged_files(staging_dir),
    }
    _write_synced(staging_dir / MANIFEST, json.dumps(record, indent=2, sort_keys=True) + "\n")
    _fsync_path(staging_dir)

    root = snapshots_dir(index_dir)
    if not root.is_dir():
        root.mkdir()
        _fsync_path(index_dir)
    target = root / snapshot_name(version)
    os.rename(staging_dir, target)
    # Both parents changed; INDEX_DIR is fsynced by the CURRENT swap below.
    _fsync_path(root)
    _swap_current(index_dir, version)
    log.info("published %s (parent %s)", target, parent)
    try:
        _prune(index_dir, keep=keep, current=version)
    except OSError as err:
        # The new snapshot is live: a failed clean-up must not report the publish as failed.
        log.warning("published %s, but pruning old snapshots failed: %s", target, err)
    return target


def _prune(index_dir: Path, *, keep: int, current: int | None) -> list[int]:
    versions = list_versions(index_dir)
    doomed = [v for v in versions[:-keep] if v != current]
    for version in doomed:
        # Move it out of snapshots/ first: a kill mid-rmtree must not leave a
        # partial vNNNNNN behind; the next writer removes the staging name.
        trash = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}pruned-{snapshot_name(version)}-", dir=index_dir))
        os.rename(snapshots_dir(index_dir) / snapshot_name(version), trash / "snapshot")
        shutil.rmtree(trash)
        log.info("pruned %s", snapshot_name(version))
    return doomed


def prune(index_dir: Path, *, keep: int = 5) -> list[int]:
    """Delete all snapshots but the newest ``keep`` and the current one; return the deleted versions.

    Takes the writer lock. Raises ValueError for ``keep`` < 1; SnapshotError
    when the lock is held or CURRENT is broken.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    index_dir = Path(index_dir)
    with SnapshotLock(index_dir):
        return _prune(index_dir, keep=keep, current=current_version(index_dir))


def set_current(index_dir: Path, version: int) -> None:
    """Make ``version`` the live snapshot (rollback or roll forward), atomically.

    Takes the writer lock and verifies the target first (manifest and every
    file's size and checksum). Raises SnapshotError when the lock is held,
    the snapshot does not exist, or it fails verification; CURRENT is then
    unchanged.
    """
    index_dir = Path(index_dir)
    target = snapshots_dir(index_dir) / snapshot_name(version)
    with SnapshotLock(index_dir):
        if not target.is_dir():
            have = ", ".join(snapshot_name(v) for v in list_versions(index_dir)) or "none"
            raise SnapshotError(f"snapshot {target} does not exist (published: {have})")
        problems = verify_files(target, read_manifest(target))
        if problems:
            raise SnapshotError(f"snapshot {target} failed verification: " + "; ".join(problems))
        _swap_current(index_dir, version)
    log.info("CURRENT is now %s", target.name)
