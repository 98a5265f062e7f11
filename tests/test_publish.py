"""Publishing is a transaction: partial, concurrent, failed and killed builds leave a folder that
verifies (converters/publish.py). Unit tests on stand-in files, then real builds through the CLI."""
import hashlib
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from posezoo.converters import publish
from posezoo.converters.publish import PublishError, Staging, check_writable, recover
from posezoo.golden import files_of
from posezoo.manifest import read_manifest

from conftest import manifest_artifact as artifact
from conftest import manifest_model


def _staged_model(staging: Staging, model_id: str, keys, content: bytes = b"model", rejected=()) -> dict:
    """A manifest entry whose artifacts (one per (format, precision) in `keys`) lie in `staging`."""
    artifacts = []
    for fmt, precision in keys:
        rel = f"{model_id}/{model_id}_{precision}.{fmt}"
        path = staging.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content + f"{fmt}{precision}".encode()
        path.write_bytes(data)
        artifacts.append({**artifact(fmt, precision), "path": rel, "sha256": hashlib.sha256(data).hexdigest(),
                          "bytes": len(data)})
    return {**manifest_model(model_id, artifacts),
            "rejected": [{"format": f, "precision": p, "reason": "parity gate failed"} for f, p in rejected]}


def _consistent(out: Path) -> list[str]:
    """What a reader of `out` would trip over: listed files missing or changed, unlisted artifact files."""
    manifest = read_manifest(out / "manifest.json")
    problems, listed = [], set()
    for m in manifest["models"]:
        for a in m["artifacts"]:
            listed.add(a["path"])
            path = out / a["path"]
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != a["sha256"]:
                problems.append(f"{a['path']} missing or changed")
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("*/*") if p.is_file() and p.parts[-2][0] != "."}
    problems += [f"{p} is not in the manifest" for p in sorted(on_disk - listed)]
    return problems


def _publish(out, model_id, keys, content=b"model", rejected=()):
    with Staging(out, model_id) as staging:
        return publish.publish(out, staging, _staged_model(staging, model_id, keys, content, rejected), "0.1")


def test_a_partial_rebuild_keeps_what_it_did_not_redo(tmp_path):
    _publish(tmp_path, "m", [("onnx", "fp32"), ("tflite", "fp32")])
    manifest = _publish(tmp_path, "m", [("onnx", "fp16")], content=b"again")
    keys = [(a["format"], a["precision"]) for a in manifest["models"][0]["artifacts"]]
    assert keys == [("onnx", "fp32"), ("onnx", "fp16"), ("tflite", "fp32")]
    assert _consistent(tmp_path) == []
    assert not list((tmp_path / ".staging").iterdir())


def test_a_rebuild_that_fails_its_gate_withdraws_the_old_file_and_lists_the_rejection(tmp_path):
    _publish(tmp_path, "m", [("onnx", "fp32"), ("onnx", "int8")])
    manifest = _publish(tmp_path, "m", [("onnx", "fp32")], content=b"new", rejected=[("onnx", "int8")])
    model = manifest["models"][0]
    assert [a["precision"] for a in model["artifacts"]] == ["fp32"]
    assert [r["precision"] for r in model["rejected"]] == ["int8"]
    assert not (tmp_path / "m" / "m_int8.onnx").exists()
    assert (tmp_path / "m" / "m_fp32.onnx").read_bytes() == b"newonnxfp32"
    assert _consistent(tmp_path) == []


def _publish_in_process(out, model_id):
    _publish(Path(out), model_id, [("onnx", "fp32"), ("tflite", "int8")])


def test_concurrent_builds_into_one_folder_lose_nothing(tmp_path):
    ids = [f"model-{k}" for k in range(12)]
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_publish_in_process, args=(str(tmp_path), i)) for i in ids]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert sorted(m["id"] for m in read_manifest(tmp_path / "manifest.json")["models"]) == sorted(ids)
    assert _consistent(tmp_path) == []


def test_a_publication_killed_halfway_is_completed_by_the_next_build(tmp_path, monkeypatch):
    _publish(tmp_path, "m", [("onnx", "fp32"), ("onnx", "fp16")])
    real_replace, calls = os.replace, []

    def dies_after_the_first_move(src, dst):
        calls.append(dst)
        if len(calls) == 3:  # journal written, one artifact moved: the process "dies" here
            raise KeyboardInterrupt
        real_replace(src, dst)

    staging = Staging(tmp_path, "m")
    model = _staged_model(staging, "m", [("onnx", "fp32"), ("onnx", "fp16")], content=b"second")
    monkeypatch.setattr(os, "replace", dies_after_the_first_move)
    with pytest.raises(KeyboardInterrupt):
        publish.publish(tmp_path, staging, model, "0.1")
    monkeypatch.setattr(os, "replace", real_replace)
    staging._lock.close()  # the dead process's lock goes with it
    assert (tmp_path / publish.JOURNAL).exists()
    assert recover(tmp_path)
    assert not (tmp_path / publish.JOURNAL).exists()
    assert (tmp_path / "m" / "m_fp16.onnx").read_bytes() == b"secondonnxfp16"
    assert _consistent(tmp_path) == []
    assert not staging.path.exists()


def test_recover_removes_dead_builds_staging_and_keeps_live_ones(tmp_path):
    live = Staging(tmp_path, "live")
    dead = Staging(tmp_path, "dead")
    dead._lock.close()
    (dead.path / "half.onnx").write_bytes(b"x")
    recover(tmp_path)
    assert live.path.is_dir() and not dead.path.exists()
    live.close()


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PublishError, match="not a writable folder"):
        check_writable(tmp_path / "file" / "out")


# Real builds through the CLI (EfficientPose RT-Lite from the authors' genuine Keras file).

def _cli(out: Path, shared: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "posezoo.scripts.cli", "build", "efficientpose-rt-lite", "--out", str(out),
            "--calibration-images", str(shared / "images"), "--mirror", str(shared / "checkpoints"),
            "--cache", str(out.parent / "cache"), "--offline", "--max-samples", "2", *args]


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (the artifacts and their golden vectors), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _verify(out: Path, shared: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "posezoo.scripts.cli", "verify", str(out / "manifest.json"),
                           "--calibration-images", str(shared / "images"), "--mirror",
                           str(shared / "checkpoints"), "--cache", str(out.parent / "cache"), "--offline"],
                          capture_output=True, text=True)


@pytest.mark.slow
def test_cli_partial_rebuild_then_a_killed_rebuild_leave_a_folder_that_verifies(tmp_path, shared):
    out = tmp_path / "zoo"
    assert subprocess.run(_cli(out, shared, "--formats", "onnx", "--precisions", "fp32")).returncode == 0
    assert subprocess.run(_cli(out, shared, "--formats", "onnx", "--precisions", "fp16")).returncode == 0
    result = _verify(out, shared)
    assert result.returncode == 0, result.stdout + result.stderr
    published = _files(out / "efficientpose-rt-lite")
    assert sorted(k for k in published if "/" not in k) == ["efficientpose-rt-lite_fp16.onnx",
                                                          "efficientpose-rt-lite_fp32.onnx"]
    artifacts = json.loads((out / "manifest.json").read_text())["models"][0]["artifacts"]
    assert {f"efficientpose-rt-lite/{k}" for k in published} == {f for a in artifacts for f in files_of(a)}
    manifest_before = (out / "manifest.json").read_bytes()

    # A forced rebuild of both, killed once its first candidate is written: nothing published changes.
    proc = subprocess.Popen(_cli(out, shared, "--formats", "onnx", "--precisions", "fp32,fp16", "--force"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((out / ".staging").glob("*/efficientpose-rt-lite/*.onnx")) and time.time() < deadline:
        assert proc.poll() is None, "the build ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "manifest.json").read_bytes() == manifest_before
    assert _files(out / "efficientpose-rt-lite") == published
    assert _verify(out, shared).returncode == 0
    assert subprocess.run(_cli(out, shared, "--formats", "onnx", "--precisions", "fp32,fp16", "--force")).returncode == 0
    assert _verify(out, shared).returncode == 0
    assert not list((out / ".staging").iterdir())  # the killed build's leftovers are gone


@pytest.mark.slow
def test_cli_two_builds_into_one_folder_at_once_both_land(tmp_path, shared):
    out = tmp_path / "zoo"
    movenet = [sys.executable, "-m", "posezoo.scripts.cli", "build", "movenet-lightning", "--precisions", "int8",
               "--out", str(out), "--calibration-images", str(shared / "images"), "--mirror",
               str(shared / "checkpoints"), "--cache", str(tmp_path / "cache2"), "--offline", "--max-samples", "2"]
    procs = [subprocess.Popen(cmd) for cmd in (_cli(out, shared, "--formats", "onnx", "--precisions", "fp32"),
                                               movenet)]
    assert [p.wait() for p in procs] == [0, 0]
    ids = [m["id"] for m in json.loads((out / "manifest.json").read_text())["models"]]
    assert sorted(ids) == ["efficientpose-rt-lite", "movenet-lightning"]
    result = _verify(out, shared)
    assert result.returncode == 0, result.stdout + result.stderr
