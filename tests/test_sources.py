import hashlib
import io
import http.server
import os
import stat
import tarfile
import threading
from pathlib import Path

import pytest

from posezoo.converters import sources

from posezoo.converters.sources import FileSpec, Resolver, Source, SourceError, user_checkpoint

PAYLOAD = b"\x1c\x00\x00\x00TFL3" + bytes(range(256)) * 40


def spec_for(data: bytes, name="model.tflite", sources=()) -> FileSpec:
    return FileSpec(name, hashlib.sha256(data).hexdigest(), len(data), tuple(sources))


def no_staging_left(cache: Path):
    return not [p for p in cache.rglob(".staging-*")]


def test_mirror_by_name_then_cache_hit(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.tflite").write_bytes(PAYLOAD)
    r = Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True)
    got = r.resolve(spec_for(PAYLOAD), "m")
    assert got.origin == "mirror" and got.path.read_bytes() == PAYLOAD
    assert r.resolve(spec_for(PAYLOAD), "m").origin == "cache"
    assert no_staging_left(tmp_path / "cache")


def test_mirror_matched_by_sha256_under_another_name(tmp_path):
    mirror = tmp_path / "mirror" / "deep"
    mirror.mkdir(parents=True)
    (mirror / "renamed.bin").write_bytes(PAYLOAD)
    got = Resolver(cache_dir=tmp_path / "cache", mirror_dir=tmp_path / "mirror", offline=True).resolve(
        spec_for(PAYLOAD), "m")
    assert got.origin == "mirror" and got.source.endswith("renamed.bin")


def test_hash_mismatch_names_variant_file_and_both_hashes(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    bad = bytearray(PAYLOAD)
    bad[100] ^= 0xFF
    (mirror / "model.tflite").write_bytes(bytes(bad))
    spec = spec_for(PAYLOAD)
    with pytest.raises(SourceError) as e:
        Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True).resolve(spec, "blazepose-lite")
    msg = str(e.value)
    assert "blazepose-lite" in msg and "model.tflite" in msg and spec.sha256 in msg
    assert hashlib.sha256(bytes(bad)).hexdigest() in msg and "wrong content" in msg
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("model.tflite"))


def test_truncated_file_is_reported_as_truncated(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.tflite").write_bytes(PAYLOAD[:1000])
    with pytest.raises(SourceError, match=r"truncated \(1000 of"):
        Resolver(cache_dir=tmp_path / "c", mirror_dir=mirror, offline=True).resolve(spec_for(PAYLOAD), "v")


def test_html_page_instead_of_model(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.tflite").write_bytes(b"<!DOCTYPE html><html><body>Sign in</body></html>")
    with pytest.raises(SourceError, match="HTML/text page"):
        Resolver(cache_dir=tmp_path / "c", mirror_dir=mirror, offline=True).resolve(spec_for(PAYLOAD), "v")


def test_missing_mirror_directory(tmp_path):
    with pytest.raises(SourceError, match="mirror directory .* does not exist"):
        Resolver(cache_dir=tmp_path / "c", mirror_dir=tmp_path / "nope", offline=True).resolve(spec_for(PAYLOAD), "v")


def test_not_found_anywhere_says_what_to_do(tmp_path):
    (tmp_path / "m").mkdir()
    spec = spec_for(PAYLOAD, sources=[Source("https", url="https://example.invalid/model.tflite")])
    with pytest.raises(SourceError) as e:
        Resolver(cache_dir=tmp_path / "c", mirror_dir=tmp_path / "m", offline=True).resolve(spec, "v")
    assert "--mirror DIR" in str(e.value) and "--checkpoint PATH" in str(e.value)
    assert "skipped (offline)" in str(e.value)


def test_corrupted_cache_entry_detected_on_read(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.tflite").write_bytes(PAYLOAD)
    r = Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True)
    path = r.resolve(spec_for(PAYLOAD), "v").path
    path.write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(SourceError, match="cache"):
        r.resolve(spec_for(PAYLOAD), "v")


class _Handler(http.server.BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self):
        type(self).calls += 1
        if type(self).calls == 1:  # first try fails: the resolver must retry
            self.send_response(503)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        self.wfile.write(PAYLOAD)

    def log_message(self, *a):
        pass


def test_http_download_with_retry(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/model.tflite"
        spec = spec_for(PAYLOAD, sources=[Source("https", url=url)])
        got = Resolver(cache_dir=tmp_path / "c", retries=3).resolve(spec, "v")
        assert got.origin == "https" and got.path.read_bytes() == PAYLOAD and _Handler.calls == 2
        assert no_staging_left(tmp_path / "c")
    finally:
        server.shutdown()


def test_npm_source_with_a_stand_in_npm(tmp_path, monkeypatch):
    """`npm pack` is replaced by a script producing a real tarball: tests the extraction path offline."""
    _stand_in_npm(tmp_path, monkeypatch, PAYLOAD)
    spec = spec_for(PAYLOAD, sources=[Source("npm", package="vendor-pose@1.0.0", path="model.tflite")])
    got = Resolver(cache_dir=tmp_path / "c").resolve(spec, "v")
    assert got.origin == "npm" and got.path.read_bytes() == PAYLOAD


def test_user_checkpoint_records_its_hash(tmp_path):
    f = tmp_path / "mine.tflite"
    f.write_bytes(PAYLOAD)
    got = user_checkpoint(f, "v")
    assert got.origin == "user" and got.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    with pytest.raises(SourceError, match="does not exist"):
        user_checkpoint(tmp_path / "nope.tflite", "v")
    (tmp_path / "page.tflite").write_text("<html>nope</html>")
    with pytest.raises(SourceError, match="HTML"):
        user_checkpoint(tmp_path / "page.tflite", "v")


def test_prefix_published_by_the_file_name_is_checked(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "net_coco-12345678.pth").write_bytes(PAYLOAD)
    good = FileSpec("net_coco-12345678.pth", "", None, (), hashlib.sha256(PAYLOAD).hexdigest()[:8])
    got = Resolver(tmp_path / "cache", mirror, offline=True).resolve(good, "litehrnet-18")
    assert got.origin == "mirror" and got.sha256 == hashlib.sha256(PAYLOAD).hexdigest()
    bad = FileSpec("net_coco-12345678.pth", "", None, (), "00000000")
    with pytest.raises(SourceError, match=r"expected sha256 00000000\.\.\. \(prefix published with the file\)"):
        Resolver(tmp_path / "cache2", mirror, offline=True).resolve(bad, "litehrnet-18")


def test_a_file_without_any_published_hash_must_come_from_the_user(tmp_path):
    from posezoo.converters.sources import Source

    spec = FileSpec("final_state.pth", "", None,
                    (Source("manual", url="https://drive.google.com/drive/folders/x", path="coco/A/final_state.pth"),))
    with pytest.raises(SourceError) as err:
        Resolver(tmp_path / "cache", None, offline=True).resolve(spec, "efficientposenas-a-coco-256x192")
    msg = str(err.value)
    assert "no checksum" in msg and "--checkpoint PATH" in msg and "coco/A/final_state.pth" in msg


def _stand_in_npm(tmp_path, monkeypatch, member: bytes) -> None:
    """An `npm` on PATH whose `pack` drops a package holding `member` as package/model.tflite."""
    tgz = tmp_path / "vendor-pose-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("package/model.tflite")
        info.size = len(member)
        tar.addfile(info, io.BytesIO(member))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(f'#!/bin/sh\n[ "$1" = pack ] || exit 1\ncp {tgz} "$5"/\n')
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")


def test_an_npm_member_larger_than_the_recipe_says_is_refused_without_being_copied_whole(tmp_path, monkeypatch):
    _stand_in_npm(tmp_path, monkeypatch, PAYLOAD + bytes(8 << 20))
    spec = spec_for(PAYLOAD, sources=[Source("npm", package="vendor-pose@1.0.0", path="model.tflite")])
    with pytest.raises(SourceError, match=rf"larger than the recipe's size of model.tflite \({len(PAYLOAD)} bytes\)"):
        Resolver(cache_dir=tmp_path / "c").resolve(spec, "v")
    assert no_staging_left(tmp_path / "c") and not list((tmp_path / "c").rglob("model.tflite"))

    unsized = FileSpec("model.tflite", "", None, spec.sources, hashlib.sha256(PAYLOAD).hexdigest()[:8])
    monkeypatch.setattr(sources, "MAX_DOWNLOAD", 1000)
    with pytest.raises(SourceError, match=r"larger than posezoo's cap for model.tflite \(1000 bytes\)"):
        Resolver(cache_dir=tmp_path / "c")._fetch_npm(spec.sources[0], tmp_path / "copy", unsized)
    assert (tmp_path / "copy").stat().st_size == 1001


def test_an_https_download_larger_than_the_recipe_says_stops_one_byte_past_it(tmp_path):
    class Endless(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            for _ in range(64):  # 64 MiB, without a Content-Length
                self.wfile.write(bytes(1 << 20))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        spec = spec_for(PAYLOAD, sources=[Source("https", url=f"http://127.0.0.1:{server.server_port}/m.tflite")])
        with pytest.raises(SourceError, match="larger than the recipe's size of model.tflite"):
            Resolver(cache_dir=tmp_path / "c", retries=1).resolve(spec, "v")
        assert no_staging_left(tmp_path / "c")
    finally:
        server.shutdown()


def _with_companion(tmp_path, weights: bytes):
    """A model.json-like main file and its weight file in a mirror, and the spec naming both."""
    mirror = tmp_path / "mirror"
    mirror.mkdir(exist_ok=True)
    (mirror / "model.json").write_bytes(b'{"format": "graph-model"}')
    (mirror / "model.bin").write_bytes(weights)
    main = spec_for(b'{"format": "graph-model"}', name="model.json")
    companion = spec_for(PAYLOAD, name="model.bin")
    return mirror, FileSpec(main.name, main.sha256, main.bytes, companions=(companion,))


def test_companions_are_verified_and_placed_beside_their_file(tmp_path):
    mirror, spec = _with_companion(tmp_path, PAYLOAD)
    got = Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True).resolve(spec, "m")
    (weights,) = got.companions
    assert weights.path == got.path.parent / "model.bin" and weights.path.read_bytes() == PAYLOAD
    assert got.digest not in (got.sha256, weights.sha256)  # the build's identity covers both files
    again = Resolver(cache_dir=tmp_path / "cache", offline=True).resolve(spec, "m")
    assert again.origin == "cache" and again.companions[0].origin == "cache" and again.digest == got.digest


def test_a_wrong_companion_is_refused_naming_it(tmp_path):
    mirror, spec = _with_companion(tmp_path, PAYLOAD[::-1])
    with pytest.raises(SourceError, match=r"model\.bin has the wrong content") as e:
        Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True).resolve(spec, "m")
    assert "beside it model.bin" in str(e.value)
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("model.bin"))


def test_resolve_first_takes_a_local_alternative_before_downloading_the_first(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "second.tflite").write_bytes(PAYLOAD[::-1])
    first = spec_for(PAYLOAD, name="first.tflite", sources=[Source("https", url="https://example.invalid/first")])
    second = spec_for(PAYLOAD[::-1], name="second.tflite")

    def no_download(*args):
        raise AssertionError("downloaded although an alternative was in the mirror")

    monkeypatch.setattr(Resolver, "_fetch_https", no_download)
    got = Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror).resolve_first([first, second], "m")
    assert got.path.name == "second.tflite" and got.origin == "mirror"


def test_resolve_first_reports_the_first_files_error_when_none_can_be_had(tmp_path):
    first, second = spec_for(PAYLOAD, name="first.tflite"), spec_for(PAYLOAD[::-1], name="second.tflite")
    with pytest.raises(SourceError, match="could not obtain first.tflite"):
        Resolver(cache_dir=tmp_path / "cache", offline=True).resolve_first([first, second], "m")


def test_resolve_first_never_passes_over_a_copy_that_fails_its_check(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "first.tflite").write_bytes(PAYLOAD[:-1] + b"!")  # tampered
    (mirror / "second.tflite").write_bytes(PAYLOAD[::-1])
    first, second = spec_for(PAYLOAD, name="first.tflite"), spec_for(PAYLOAD[::-1], name="second.tflite")
    with pytest.raises(SourceError, match="first.tflite has the wrong content"):
        Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True).resolve_first([first, second], "m")


def _variant_with_vendor_int8(original: FileSpec, vendor: FileSpec):
    from posezoo.recipes import Variant

    as_dict = lambda s: {"name": s.name, "sha256": s.sha256, "bytes": s.bytes,  # noqa: E731
                         "sources": [{"kind": "manual", "url": "https://example.invalid/page"}]}
    entry = {"id": "m", "vendor": [{"format": "tflite", "precision": "int8", "file": as_dict(vendor)}]}
    return Variant("m", "f", "v", original, {"variants": [entry], "original_format": "tflite"})


def test_a_precision_whose_publisher_file_cannot_be_had_is_built_from_the_original(tmp_path):
    """MoveNet Thunder: Google's INT8 file only comes from TF Hub; the bundle's weights are here."""
    from posezoo.converters.pipeline import resolve_inputs

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "model.tflite").write_bytes(PAYLOAD)
    variant = _variant_with_vendor_int8(spec_for(PAYLOAD), spec_for(PAYLOAD[::-1], name="vendor_int8.tflite"))
    resolver = Resolver(cache_dir=tmp_path / "cache", mirror_dir=mirror, offline=True)
    original, vendor = resolve_inputs(variant, resolver, None, ("fp32", "int8"))
    assert original.path.read_bytes() == PAYLOAD and vendor == {}
    (mirror / "vendor_int8.tflite").write_bytes(PAYLOAD[::-1][:-1] + b"!")  # there, but not the publisher's bytes
    with pytest.raises(SourceError, match="vendor_int8.tflite has the wrong content"):
        resolve_inputs(variant, resolver, None, ("fp32", "int8"))
