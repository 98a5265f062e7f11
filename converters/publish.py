"""Publishing into a build folder as a transaction: nothing a reader trusts is ever half-done.

A build writes every candidate, with its golden vectors (zoo/golden.py), into a staging folder of
its own inside the output folder (`.staging/<model>.<pid>.<random>/`, the same layout as the
published folder). Only gated, embedded files are published, in one step under the folder's lock:

1. re-read the manifest (another build may have published meanwhile) and merge this model's
   entry into it (`posezoo.manifest.upsert_model`: (format, precision) pairs this build did not redo
   keep their files and entries);
2. write a journal (`.publish.json`: the new manifest, the files to move onto published names
   and the files the new manifest no longer lists), atomically: from here the publication is
   decided;
3. move the staged files onto their published names (atomic renames), write the manifest,
   delete the withdrawn files, delete the journal.

A build killed before step 2 leaves the published folder as it was (its staging folder is
removed by the next build); one killed during step 3 is completed by the next build or
`posezoo verify` (`recover`), which replays the journal. Concurrent builds into one folder
serialize step 1-3 on the lock, so none loses another's models.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from posezoo.errors import PosezooError
from posezoo.golden import files_of
from posezoo.manifest import empty_manifest, read_manifest, upsert_model, validate, write_manifest

from .fileio import atomic_path

STAGING = ".staging"
JOURNAL = ".publish.json"
LOCK = ".posezoo.lock"


class PublishError(PosezooError):
    """The output folder cannot be used (not writable, full); the message says which and what to do."""


def check_writable(out: Path) -> None:
    """Create `out` if needed and prove a file can be written and renamed in it, before any work."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".posezoo-probe-")
        os.close(fd)
        os.replace(probe, probe + ".renamed")
        os.unlink(probe + ".renamed")
    except OSError as e:
        raise PublishError(f"--out {out} is not a writable folder ({e.strerror}): choose another folder or "
                           "fix its permissions") from None


@contextmanager
def locked(out: Path):
    """Hold the output folder's lock (an flock, released by the kernel if the process dies)."""
    with open(Path(out) / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class Staging:
    """A build's private folder inside `out`, locked for as long as the build holds it, so that
    a later build can tell a dead build's leftovers (removed) from a live one's (kept)."""

    def __init__(self, out: Path, name: str):
        root = Path(out) / STAGING
        root.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=root, prefix=f"{name}.{os.getpid()}."))
        self._lock = open(self.path / ".lock", "w")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self._lock.close()

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remove_stale_staging(out: Path) -> None:
    """Remove the staging folders of builds that are no longer running (their lock is free)."""
    root = Path(out) / STAGING
    for folder in sorted(root.glob("*")) if root.is_dir() else []:
        try:
            with open(folder / ".lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live build
        except OSError:
            pass  # no lock file: a build killed while creating it
        shutil.rmtree(folder, ignore_errors=True)


def recover(out: Path) -> bool:
    """Complete a publication that a killed build had decided (its journal exists) and remove dead
    builds' staging folders. Returns True when a journal was replayed."""
    out = Path(out)
    if not out.is_dir():
        return False
    with locked(out):
        replayed = _replay(out)
        _remove_stale_staging(out)
    return replayed


def publish(out: Path, staging: Staging, model: dict, version: str) -> dict:
    """Publish `model` (a manifest entry whose artifacts lie in `staging` under their published
    relative paths) into `out`; returns the manifest as written."""
    out = Path(out)
    with locked(out):
        _replay(out)
        path = out / "manifest.json"
        before = read_manifest(path) if path.exists() else empty_manifest(version)
        after = upsert_model(before, model)
        validate(after, f"the manifest of {out} with {model['id']}")  # refused before anything moves
        staged = sorted({f for a in model["artifacts"] for f in files_of(a)})  # golden data files are shared
        moves = [[str((staging.path / f).relative_to(out)), f] for f in staged]
        kept = {f for m in after["models"] for a in m["artifacts"] for f in files_of(a)}
        withdrawn = sorted({f for m in before["models"] for a in m["artifacts"] for f in files_of(a)} - kept)
        _write_json(out / JOURNAL, {"manifest": after, "moves": moves, "remove": withdrawn})
        _replay(out)
    return after


def _replay(out: Path) -> bool:
    journal = out / JOURNAL
    if not journal.exists():
        return False
    plan = json.loads(journal.read_text())
    for staged, published in plan["moves"]:
        if (out / staged).exists():
            (out / published).parent.mkdir(parents=True, exist_ok=True)
            os.replace(out / staged, out / published)
        elif not (out / published).exists():
            raise PublishError(f"{out / JOURNAL}: the staged file {staged} of an interrupted publication is "
                               "gone; delete the journal and rebuild with `posezoo build ... --force`")
    write_manifest(out / "manifest.json", plan["manifest"])
    for published in plan["remove"]:
        (out / published).unlink(missing_ok=True)
    journal.unlink()
    return True


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
