"""Index snapshots: publish, CURRENT, rollback, pruning, the lock, and crash safety."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from indexer.snapshots import SnapshotLock, clean_leftovers, prune, publish, set_current, staging
from search.errors import SnapshotError
from search.model_card import sha256_file
from search.snapshot_dir import (
    CURRENT,
    MANIFEST,
    current_path,
    current_version,
    list_versions,
    read_manifest,
    snapshot_name,
    verify_files,
)

REPO = Path(__file__).resolve().parent.parent


def _publish(index_dir: Path, files: dict[str, bytes], *, keep: int = 5, **extra: object) -> Path:
    with staging(index_dir) as work:
        for name, data in files.items():
            (work / name).write_bytes(data)
        return publish(index_dir, work, dict(extra), keep=keep)


def _staging_leftovers(index_dir: Path) -> list[str]:
    return sorted(p.name for p in index_dir.glob(".staging-*"))


def test_publish_writes_manifest_and_points_current(tmp_path: Path) -> None:
    fixed = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
    with staging(tmp_path) as work:
        (work / "index.faiss").write_bytes(b"faiss" * 100)
        (work / "products.sqlite").write_bytes(b"")
        caller = {"model_fingerprint": "abc123", "count": 2}
        snap = publish(tmp_path, work, caller, clock=lambda: fixed)

    assert snap == tmp_path / "snapshots" / "v000001"
    assert current_path(tmp_path) == snap
    assert (tmp_path / CURRENT).read_text() == "v000001\n"
    assert sorted(p.name for p in snap.iterdir()) == sorted([MANIFEST, "index.faiss", "products.sqlite"])
    manifest = read_manifest(snap)
    assert manifest == {
        "model_fingerprint": "abc123",
        "count": 2,
        "version": 1,
        "parent": None,
        "created": "2024-05-01T12:00:00.000Z",
        "files": {
            "index.faiss": {"sha256": sha256_file(snap / "index.faiss"), "bytes": 500},
            "products.sqlite": {"sha256": sha256_file(snap / "products.sqlite"), "bytes": 0},
        },
    }
    assert caller == {"model_fingerprint": "abc123", "count": 2}  # the caller's dict is not touched
    assert verify_files(snap, manifest) == []
    assert _staging_leftovers(tmp_path) == []


def test_versions_increase_and_name_their_parent(tmp_path: Path) -> None:
    for i in range(3):
        _publish(tmp_path, {"data.bin": bytes([i]) * 10})
    assert list_versions(tmp_path) == [1, 2, 3]
    assert [read_manifest(tmp_path / "snapshots" / snapshot_name(v))["parent"] for v in (1, 2, 3)] == [None, 1, 2]
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000003"
    assert current_version(tmp_path) == 3


@pytest.mark.parametrize(
    ("keep", "published", "left"),
    [(1, 3, [3]), (2, 5, [4, 5]), (5, 3, [1, 2, 3])],
    ids=["keep-1", "keep-2", "keep-more-than-published"],
)
def test_pruning_keeps_the_newest(tmp_path: Path, keep: int, published: int, left: list[int]) -> None:
    for i in range(published):
        _publish(tmp_path, {"data.bin": bytes([i])}, keep=keep)
    assert list_versions(tmp_path) == left
    assert _staging_leftovers(tmp_path) == []


def test_pruning_never_removes_current(tmp_path: Path) -> None:
    for i in range(3):
        _publish(tmp_path, {"data.bin": bytes([i])})
    set_current(tmp_path, 1)
    assert prune(tmp_path, keep=1) == [2]
    assert list_versions(tmp_path) == [1, 3]
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000001"
    assert _staging_leftovers(tmp_path) == []


def test_keep_below_one_is_refused(tmp_path: Path) -> None:
    with staging(tmp_path) as work, pytest.raises(ValueError, match="keep"):
        publish(tmp_path, work, {}, keep=0)
    with pytest.raises(ValueError, match="keep"):
        prune(tmp_path, keep=0)


def test_rollback_to_an_older_version(tmp_path: Path) -> None:
    for i in range(3):
        _publish(tmp_path, {"data.bin": bytes([i]) * 100})
    set_current(tmp_path, 1)
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000001"
    snap = _publish(tmp_path, {"data.bin": b"new"})
    assert read_manifest(snap)["version"] == 4
    assert read_manifest(snap)["parent"] == 1  # the parent is what was live, not the newest


def test_rollback_to_a_missing_version_is_refused(tmp_path: Path) -> None:
    _publish(tmp_path, {"data.bin": b"x"})
    with pytest.raises(SnapshotError, match=r"v000009 does not exist \(published: v000001\)"):
        set_current(tmp_path, 9)
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000001"


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _remove(path: Path) -> None:
    path.unlink()


def _add_stray(path: Path) -> None:
    (path.parent / "stray.bin").write_bytes(b"?")


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_truncate, "999 bytes, manifest says 1000"),
        (_flip_byte, "checksum mismatch"),
        (_remove, "missing"),
        (_add_stray, "stray.bin: unexpected"),
    ],
    ids=["truncated", "flipped-byte", "missing", "extra-file"],
)
def test_corrupted_snapshot_is_reported_and_refused(tmp_path: Path, damage, problem: str) -> None:
    _publish(tmp_path, {"data.bin": bytes(range(250)) * 4, "other.bin": b"ok"})
    _publish(tmp_path, {"data.bin": b"second"})
    old = tmp_path / "snapshots" / "v000001"
    damage(old / "data.bin")

    problems = verify_files(old, read_manifest(old))
    assert len(problems) == 1 and problem in problems[0]
    with pytest.raises(SnapshotError, match="v000001 failed verification"):
        set_current(tmp_path, 1)
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000002"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", "is corrupt"),
        ('{"version": 1, "parent": null, "created": "x"}', "missing key 'files'"),
        ('{"version": 1, "parent": null, "created": "x", "files": {"../a": {"sha256": "0", "bytes": 1}}}', "bad file"),
        ('{"version": 0, "parent": null, "created": "x", "files": {}}', "version must be"),
        ('{"version": 1, "parent": null, "created": "x", "files": {"a": {"bytes": 1}}}', "lacks a sha256"),
    ],
    ids=["not-json", "missing-key", "escaping-name", "bad-version", "no-checksum"],
)
def test_bad_manifest_raises_naming_the_path(tmp_path: Path, text: str, error: str) -> None:
    (tmp_path / MANIFEST).write_text(text)
    with pytest.raises(SnapshotError, match=error) as info:
        read_manifest(tmp_path)
    assert str(tmp_path / MANIFEST) in str(info.value)


def test_missing_manifest_raises(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="is missing"):
        read_manifest(tmp_path)


def test_current_path_states(tmp_path: Path) -> None:
    assert current_path(tmp_path) is None and current_version(tmp_path) is None
    (tmp_path / CURRENT).write_text("garbage\n")
    with pytest.raises(SnapshotError, match="does not name a snapshot"):
        current_path(tmp_path)
    (tmp_path / CURRENT).write_text("v000003\n")
    with pytest.raises(SnapshotError, match="names v000003, but"):
        current_path(tmp_path)


def test_snapshot_name_and_list_versions(tmp_path: Path) -> None:
    assert snapshot_name(7) == "v000007"
    assert snapshot_name(1234567) == "v1234567"
    with pytest.raises(ValueError):
        snapshot_name(0)
    assert list_versions(tmp_path) == []
    for name in ("v000010", "v000002", "v1234567", "vx", "v12", "v000000"):
        (tmp_path / "snapshots" / name).mkdir(parents=True)
    (tmp_path / "snapshots" / "v000005").write_text("a file, not a snapshot")
    assert list_versions(tmp_path) == [2, 10, 1234567]


def test_leftovers_are_cleaned(tmp_path: Path) -> None:
    _publish(tmp_path, {"data.bin": b"x"})
    (tmp_path / ".staging-abc" / "sub").mkdir(parents=True)
    (tmp_path / ".staging-abc" / "sub" / "f").write_bytes(b"1")
    (tmp_path / (CURRENT + ".tmp")).write_text("v000009\n")
    removed = clean_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == [".staging-abc", "CURRENT.tmp"]
    assert _staging_leftovers(tmp_path) == [] and not (tmp_path / "CURRENT.tmp").exists()
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000001"
    assert clean_leftovers(tmp_path) == []

    (tmp_path / ".staging-def").mkdir()
    with staging(tmp_path) as work:  # the next writer cleans too
        assert _staging_leftovers(tmp_path) == [work.name]


def test_exception_inside_staging_leaves_current_and_removes_staging(tmp_path: Path) -> None:
    _publish(tmp_path, {"data.bin": b"x"})
    with pytest.raises(RuntimeError, match="encoder failed"):
        with staging(tmp_path) as work:
            (work / "data.bin").write_bytes(b"half")
            raise RuntimeError("encoder failed")
    assert _staging_leftovers(tmp_path) == []
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000001"
    assert list_versions(tmp_path) == [1]


def test_staging_without_publish_publishes_nothing(tmp_path: Path) -> None:
    with staging(tmp_path) as work:
        (work / "data.bin").write_bytes(b"x")
    assert _staging_leftovers(tmp_path) == [] and current_path(tmp_path) is None


def test_second_writer_gets_the_lock_error(tmp_path: Path) -> None:
    with staging(tmp_path):
        message = f"another semsearch-index command is writing {tmp_path}"
        with pytest.raises(SnapshotError, match=message):
            with staging(tmp_path):
                pass
        with pytest.raises(SnapshotError, match=message):
            set_current(tmp_path, 1)
        with pytest.raises(SnapshotError, match=message):
            clean_leftovers(tmp_path)
    with SnapshotLock(tmp_path):  # released on exit
        pass


def test_lock_is_exclusive_across_processes(tmp_path: Path) -> None:
    code = "import sys; from indexer.snapshots import staging\nwith staging(sys.argv[1]): print('held', flush=True); sys.stdin.read()"
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(SnapshotError, match="another semsearch-index command"):
            SnapshotLock(tmp_path).__enter__()
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    with SnapshotLock(tmp_path):
        pass


def test_publish_outside_staging_is_refused(tmp_path: Path) -> None:
    work = tmp_path / ".staging-manual"
    work.mkdir()
    with pytest.raises(SnapshotError, match="must run inside staging"):
        publish(tmp_path, work, {})
    with staging(tmp_path), pytest.raises(SnapshotError, match="is not a staging directory"):
        publish(tmp_path, tmp_path / "elsewhere", {})


@pytest.mark.parametrize("entry", ["subdir", MANIFEST], ids=["subdir", "own-manifest"])
def test_publish_refuses_what_a_snapshot_cannot_hold(tmp_path: Path, entry: str) -> None:
    with pytest.raises(SnapshotError, match=entry):
        with staging(tmp_path) as work:
            if entry == "subdir":
                (work / entry).mkdir()
            else:
                (work / entry).write_text("{}")
            publish(tmp_path, work, {})
    assert current_path(tmp_path) is None and list_versions(tmp_path) == []


def test_kill_between_rename_and_current_swap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _publish(tmp_path, {"data.bin": b"one"})
    real_replace = os.replace

    def crash_on_current(src: object, dst: object) -> None:
        if Path(str(dst)).name == CURRENT:
            raise OSError("simulated kill before the CURRENT swap")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_current)
    with pytest.raises(OSError, match="simulated kill"):
        _publish(tmp_path, {"data.bin": b"two"})
    monkeypatch.undo()

    # The orphan v2 is complete but not live; CURRENT still names v1.
    orphan = tmp_path / "snapshots" / "v000002"
    assert current_path(tmp_path) == tmp_path / "snapshots" / "v000001"
    assert list_versions(tmp_path) == [1, 2]
    assert verify_files(orphan, read_manifest(orphan)) == []

    # The next publish numbers past the orphan and names the live v1 its parent.
    snap = _publish(tmp_path, {"data.bin": b"three"})
    assert snap.name == "v000003" and current_path(tmp_path) == snap
    assert read_manifest(snap)["parent"] == 1
    assert not (tmp_path / "CURRENT.tmp").exists()
    # The orphan stays a usable version until pruned like any other.
    set_current(tmp_path, 2)
    assert (orphan / "data.bin").read_bytes() == b"two"


WRITER = """
import os, random, sys
from indexer.snapshots import publish, staging
index_dir, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
print("ready", flush=True)
while True:
    with staging(index_dir) as work:
        for name in ("index.faiss", "products.sqlite"):
            (work / name).write_bytes(rng.randbytes(rng.randint(1, 4) << 20))
        publish(index_dir, work, {"seed": seed}, keep=2)
"""


def test_sigkill_at_random_moments_never_leaves_a_partial_current(tmp_path: Path) -> None:
    rng = random.Random(20240501)
    index_dir = tmp_path / "index"
    published_before = 0
    for round_ in range(8):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(index_dir), str(round_)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        try:
            writer.wait(timeout=rng.uniform(0.0, 0.4))
        except subprocess.TimeoutExpired:
            writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        assert writer.returncode == -signal.SIGKILL

        current = current_path(index_dir)
        versions = list_versions(index_dir)
        if current is not None:
            assert verify_files(current, read_manifest(current)) == []
        published_before = max([published_before, *versions])
        for version in versions:  # every directory under snapshots/ is whole, orphans included
            snap = index_dir / "snapshots" / snapshot_name(version)
            assert verify_files(snap, read_manifest(snap)) == []
        clean_leftovers(index_dir)
        assert _staging_leftovers(index_dir) == [] and not (index_dir / "CURRENT.tmp").exists()

    assert published_before > 0
    snap = _publish(index_dir, {"data.bin": b"after the kills"})
    assert current_path(index_dir) == snap
    assert read_manifest(snap)["version"] == published_before + 1


def test_manifest_is_pretty_sorted_json(tmp_path: Path) -> None:
    snap = _publish(tmp_path, {"b": b"1", "a": b"2"}, count=2)
    text = (snap / MANIFEST).read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def test_a_failed_prune_does_not_fail_the_publish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    import indexer.snapshots as snapshots_module

    for _ in range(2):
        with staging(tmp_path) as stage:
            (stage / "data.bin").write_bytes(b"x")
            publish(tmp_path, stage, {}, keep=5)

    real_rmtree = snapshots_module.shutil.rmtree

    def refuse_pruning(path: object, *args: object, **kwargs: object) -> None:
        if "pruned" in str(path):
            raise PermissionError(13, "Permission denied")
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(snapshots_module.shutil, "rmtree", refuse_pruning)
    with staging(tmp_path) as stage:
        (stage / "data.bin").write_bytes(b"y")
        publish(tmp_path, stage, {}, keep=1)
    assert current_version(tmp_path) == 3
    assert "pruning old snapshots failed" in caplog.text
