"""The read side of an index directory: which snapshot is live, and is it whole.

An index directory holds immutable, versioned snapshots that the indexer
writes and the service hot-swaps::

    INDEX_DIR/
      CURRENT                 one line: the live snapshot's directory name ("v000007")
      snapshots/v000007/      manifest.json + data files, immutable once published
      vectors.sqlite          the indexer's content-hash vector cache
      .staging-*/             in-progress work of a writer; never read here
      .lock                   the writer lock

A snapshot directory appears under ``snapshots/`` only by an atomic rename of
a fully written and fsynced directory, and ``CURRENT`` changes only by an
atomic replace, so a reader never sees a partial snapshot. This module only
reads; the writer is ``indexer.snapshots``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from search.errors import SnapshotError
from search.model_card import sha256_file

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
SNAPSHOTS = "snapshots"

# Six digits sort correctly as text up to v999999; more digits still parse.
_NAME = re.compile(r"v(\d{6,})")
_REQUIRED = ("version", "parent", "created", "files")


def snapshot_name(version: int) -> str:
    """The directory name of ``version``: ``snapshot_name(7) == "v000007"``.

    Raises ValueError for a version below 1.
    """
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"snapshot version must be an integer >= 1, got {version!r}")
    return f"v{version:06d}"


def parse_snapshot_name(name: str) -> int | None:
    """The version a snapshot directory name stands for, or None if it is not one."""
    match = _NAME.fullmatch(name)
    if match is None or int(match.group(1)) < 1:
        return None
    return int(match.group(1))


def snapshots_dir(index_dir: Path) -> Path:
    """Where ``index_dir`` keeps its published snapshots."""
    return Path(index_dir) / SNAPSHOTS


def current_path(index_dir: Path) -> Path | None:
    """The live snapshot's directory, or None when nothing was published yet.

    Raises SnapshotError (naming the file) when CURRENT is unreadable, is not
    a snapshot name, or names a directory that does not exist.
    """
    pointer = Path(index_dir) / CURRENT
    try:
        text = pointer.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise SnapshotError(f"{pointer} is unreadable ({err})") from err
    name = text.strip()
    if parse_snapshot_name(name) is None:
        raise SnapshotError(f"{pointer} does not name a snapshot (it holds {text[:40]!r})")
    snapshot = snapshots_dir(index_dir) / name
    if not snapshot.is_dir():
        raise SnapshotError(f"{pointer} names {name}, but {snapshot} does not exist")
    return snapshot


def current_version(index_dir: Path) -> int | None:
    """The live snapshot's version, or None; raises as ``current_path`` does."""
    current = current_path(index_dir)
    return None if current is None else parse_snapshot_name(current.name)


def list_versions(index_dir: Path) -> list[int]:
    """Versions of the snapshot directories under ``snapshots/``, ascending.

    Every such directory arrived by an atomic rename, so each one is complete
    unless someone altered it afterwards (``verify_files`` finds that). It
    may be newer than CURRENT when a writer died between the two steps.
    """
    root = snapshots_dir(index_dir)
    if not root.is_dir():
        return []
    versions = (parse_snapshot_name(entry.name) for entry in root.iterdir() if entry.is_dir())
    return sorted(version for version in versions if version is not None)


def _check_manifest(raw: Any) -> None:
    """Raise ValueError describing the first way ``raw`` is not a manifest."""
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    for key in _REQUIRED:
        if key not in raw:
            raise ValueError(f"missing key {key!r}")
    version, parent = raw["version"], raw["parent"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be an integer >= 1, got {version!r}")
    if parent is not None and (isinstance(parent, bool) or not isinstance(parent, int)):
        raise ValueError(f"parent must be an integer or null, got {parent!r}")
    if not isinstance(raw["created"], str):
        raise ValueError("created must be a string")
    files = raw["files"]
    if not isinstance(files, dict):
        raise ValueError("files must be an object")
    for name, entry in files.items():
        # A name with a separator could point outside the snapshot.
        if name in ("", ".", "..", MANIFEST) or "/" in name or "\\" in name:
            raise ValueError(f"bad file name {name!r}")
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise ValueError(f"file {name!r} lacks a sha256")
        size = entry.get("bytes")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"file {name!r} lacks a byte count")


def read_manifest(snapshot: Path) -> dict[str, Any]:
    """The parsed ``manifest.json`` of a snapshot directory.

    Raises SnapshotError naming the path when the manifest is missing, is
    not valid JSON, or lacks a required key (version, parent, created,
    files: name -> {"sha256", "bytes"}).
    """
    path = Path(snapshot) / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        _check_manifest(raw)
    except FileNotFoundError as err:
        raise SnapshotError(f"snapshot manifest {path} is missing") from err
    except (OSError, ValueError) as err:
        # json.JSONDecodeError and UnicodeDecodeError are ValueErrors.
        raise SnapshotError(f"snapshot manifest {path} is corrupt ({err})") from err
    return raw


def verify_files(snapshot: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with a snapshot's files against its manifest; [] when whole.

    Reports a version that disagrees with the directory name, and each
    missing file, size mismatch, checksum mismatch and unexpected entry.
    Reads every listed file in full, so costs one pass over the snapshot.
    """
    snapshot = Path(snapshot)
    problems: list[str] = []
    if parse_snapshot_name(snapshot.name) != manifest["version"]:
        problems.append(f"{snapshot}: manifest says version {manifest['version']}")
    listed: dict[str, Any] = manifest["files"]
    for name, entry in sorted(listed.items()):
        path = snapshot / name
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        size = path.stat().st_size
        if size != entry["bytes"]:
            # A size mismatch already condemns the file; skip hashing it.
            problems.append(f"{path}: {size} bytes, manifest says {entry['bytes']}")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: checksum mismatch")
    if snapshot.is_dir():
        for entry in sorted(snapshot.iterdir()):
            if entry.name != MANIFEST and entry.name not in listed:
                problems.append(f"{entry}: unexpected, not in the manifest")
    return problems
