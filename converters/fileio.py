"""Atomic file output: write to a staging path beside the target, rename into place on success."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path):
    """Yield a staging path; on success it replaces `target` atomically, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; published files are world-readable
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_copy(src: Path, target: Path) -> Path:
    with atomic_path(target) as tmp:
        shutil.copyfile(src, tmp)
    return Path(target)


def atomic_write_text(target: Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)
