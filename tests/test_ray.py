"""Builds on Ray (converters/cluster.py): the same files and manifest entries as a local build,
a worker killed mid-build survived, an interrupted driver resumed, another toolchain refused.
Unit tests of the shipping and the toolchain check, then real builds of genuine originals
(MoveNet Lightning's vendor INT8, EfficientPose RT-Lite from the authors' Keras file) on a
two-node `ray.cluster_utils.Cluster` and on a local instance, all on this machine, offline."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from posezoo.converters import cluster
from posezoo.converters.cluster import ClusterError, Shipped, check_toolchain, toolchain, toolchain_differences
from posezoo.converters.sources import ResolvedFile, sha256_of
from posezoo.scripts.cli import EXIT_BAD_INPUT, main


def _other(tool: str, version: str) -> dict:
    mine = toolchain()
    return {**mine, "tools": {**mine["tools"], tool: version}}


def test_a_worker_refuses_a_driver_with_another_toolchain():
    check_toolchain(toolchain())  # the same set passes
    with pytest.raises(ClusterError, match=r"onnxruntime 1\.32\.0 \(driver 1\.0\.0\).*Install the same pinned"):
        # as the worker sees it: the driver's set is the odd one; the message names the tool and both versions
        check_toolchain(_other("onnxruntime", "1.0.0"))
    assert toolchain_differences(toolchain(), {**toolchain(), "posezoo_code": "0" * 64})[0].startswith("posezoo code")


def test_an_unreachable_cluster_is_named_at_once(tmp_path, shared, capsys):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.time()
    assert main(["build", "efficientpose-rt-lite", "--out", str(tmp_path / "zoo"), "--calibration-images",
                 str(shared / "images"), "--mirror", str(shared / "checkpoints"), "--cache", str(tmp_path / "cache"),
                 "--offline", "--ray", f"127.0.0.1:{port}"]) == EXIT_BAD_INPUT
    assert time.time() - start < 60  # ray.init alone would retry for minutes
    assert f"--ray 127.0.0.1:{port}: nothing answers there" in capsys.readouterr().err
    with pytest.raises(ClusterError, match="expected the HOST:PORT"):
        cluster._check_reachable("headnode")
    with pytest.raises(ClusterError, match="Ray Client addresses are not supported"):
        cluster._check_reachable("ray://headnode:10001")
    with pytest.raises(SystemExit):
        main(["build", "efficientpose-rt-lite", "--out", str(tmp_path), "--ray-cpus", "0"])
    assert "--ray-cpus: '0' is not a positive number of CPUs" in capsys.readouterr().err


def test_shipped_bytes_land_verified(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"weights")
    resolved = ResolvedFile(path, sha256_of(path), 7, "mirror", "mirror folder")
    (tmp_path / "elsewhere").mkdir()
    landed = Shipped.of(resolved).land(tmp_path / "elsewhere")
    assert landed.path.read_bytes() == b"weights" and landed.sha256 == resolved.sha256
    with pytest.raises(ClusterError, match="model.tflite: the bytes that reached the worker"):
        Shipped(resolved, b"weightz").land(tmp_path / "elsewhere")


def test_a_tfjs_model_travels_with_its_weight_files(tmp_path):
    (tmp_path / "model.json").write_bytes(b"{}")
    (tmp_path / "model.bin").write_bytes(b"weights")
    bin_file = ResolvedFile(tmp_path / "model.bin", sha256_of(tmp_path / "model.bin"), 7, "mirror", "m")
    resolved = ResolvedFile(tmp_path / "model.json", sha256_of(tmp_path / "model.json"), 2, "mirror", "m",
                            companions=(bin_file,))
    (tmp_path / "elsewhere").mkdir()
    landed = Shipped.of(resolved).land(tmp_path / "elsewhere")
    assert landed.companions[0].path == tmp_path / "elsewhere" / "model.bin" and landed.digest == resolved.digest
    with pytest.raises(ClusterError, match="model.bin: the bytes that reached the worker"):
        Shipped(resolved, b"{}", (b"weightz",)).land(tmp_path / "other")  # nothing written: the folder does not exist


def test_a_folder_travels_whole(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.jpg").write_bytes(b"1")
    (tmp_path / "a" / "y.json").write_bytes(b"2")
    files = cluster.pack_folder(tmp_path / "a")
    assert files == {"b/x.jpg": b"1", "y.json": b"2"}
    assert cluster.pack_folder(cluster.unpack_folder(files, tmp_path / "c")) == files


# --- real builds -----------------------------------------------------------------------------------

MODELS = ["efficientpose-rt-lite", "efficientpose-i-lite"]
OPTIONS = ["--formats", "onnx,tflite", "--precisions", "fp32", "--max-samples", "2"]
TIMING = ("seconds", "steps")  # the only fields of a manifest entry that say how long, not what


def _build(out: Path, shared: Path, *extra: str) -> list[str]:
    return ["build", *MODELS, "--out", str(out), "--calibration-images", str(shared / "images"), "--mirror",
            str(shared / "checkpoints"), "--cache", str(out.parent / f"cache-{out.name}"), "--offline", *OPTIONS, *extra]


def _entries(out: Path) -> dict:
    """The manifest's models without their timings, and every published file's bytes."""
    manifest = json.loads((out / "manifest.json").read_text())
    models = {m["id"]: {**m, "build": {k: v for k, v in m["build"].items() if k not in TIMING}}
              for m in manifest["models"]}
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("*/**/*")
             if p.is_file() and not p.relative_to(out).parts[0].startswith(".")}
    return {"models": models, "files": files}


@pytest.fixture(scope="module")
def two_nodes():
    """A Ray cluster of two nodes (one CPU each) on this machine."""
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    nodes.add_node(num_cpus=1)
    nodes.wait_for_nodes()
    yield nodes
    nodes.shutdown()


def _task_processes() -> list[int]:
    """Pids of Ray workers running a model's build (Ray titles them after the task's function)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::_build_on_worker"):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _kill_one_worker(after: float, killed: list[int], stop: threading.Event) -> None:
    """Kill the first Ray worker building a model once it has run `after` seconds."""
    while not stop.is_set():
        pids = _task_processes()
        if pids:
            time.sleep(after)
            if pids[0] in _task_processes():
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
        time.sleep(0.2)


@pytest.mark.slow
def test_a_ray_build_on_two_nodes_survives_a_killed_worker_and_equals_the_local_build(tmp_path, shared, two_nodes):
    assert main(_build(tmp_path / "local", shared)) == 0
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_one_worker, args=(10.0, killed, stop))
    killer.start()
    try:
        assert main(_build(tmp_path / "ray", shared, "--ray", two_nodes.address)) == 0
    finally:
        stop.set()
        killer.join()
    assert killed, "no worker was killed: the test did not test a retry"
    local, ray = _entries(tmp_path / "local"), _entries(tmp_path / "ray")
    assert sorted(local["models"]) == sorted(MODELS) and len(local["files"]) > 6
    assert local["files"].keys() == ray["files"].keys()
    assert [k for k in local["files"] if local["files"][k] != ray["files"][k]] == []
    assert local["models"] == ray["models"]


@pytest.mark.slow
def test_the_nodes_toolchains_are_checked_before_anything_is_scheduled(tmp_path, shared, two_nodes, monkeypatch,
                                                                       capsys):
    driver = _other("tensorflow-cpu", "0.0.1")
    monkeypatch.setattr(cluster, "toolchain", lambda: driver)  # the driver's side only: workers report their own
    assert main(_build(tmp_path / "zoo", shared, "--ray", two_nodes.address)) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "Ray nodes with another toolchain than the driver" in err and "tensorflow-cpu 2." in err
    assert err.count("(driver 0.0.1)") == 2  # both nodes named
    assert not (tmp_path / "zoo" / "manifest.json").exists()


@pytest.mark.slow
def test_a_killed_ray_driver_leaves_the_folder_whole_and_a_rerun_resumes(tmp_path, shared):
    out = tmp_path / "zoo"
    # One task at a time on the local instance (all of the machine's CPUs per task): the first model
    # is published while the second is being built.
    command = [sys.executable, "-m", "posezoo.scripts.cli", *_build(out, shared, "--ray", "--ray-cpus",
                                                                    str(os.cpu_count()))]
    command[command.index("onnx,tflite")] = "onnx"
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not (out / "manifest.json").exists() and time.time() < deadline:
        assert driver.poll() is None, "the build ended before its driver could be killed"
        time.sleep(0.2)
    while not _task_processes() and time.time() < deadline:  # the second model's task has started
        time.sleep(0.2)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    published = json.loads((out / "manifest.json").read_text())["models"]
    assert len(published) == 1
    first = published[0]["id"]
    for art in published[0]["artifacts"]:
        assert sha256_of(out / art["path"]) == art["sha256"]
    assert {p.name for p in (out / first).iterdir() if p.is_file()} == {Path(a["path"]).name
                                                                       for a in published[0]["artifacts"]}
    assert [p.name for p in out.iterdir() if p.name in MODELS] == [first]  # nothing of the other model published

    rerun = subprocess.run(command, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"[{first}] up to date" in rerun.stdout
    assert sorted(m["id"] for m in json.loads((out / "manifest.json").read_text())["models"]) == sorted(MODELS)
    assert not list((out / ".staging").iterdir())  # the killed build's staging folder is gone


@pytest.mark.slow
def test_a_ray_eval_equals_the_local_eval(zoo, shared, tmp_path, two_nodes):
    from posezoo.converters.sources import Resolver
    from posezoo.scripts.evaluate import evaluate, read_annotations

    resolver = Resolver(cache_dir=tmp_path / "cache", mirror_dir=shared / "checkpoints", offline=True)
    for kind in ("mpii", "coco"):
        ann = read_annotations(shared / "images" / kind / f"test_{kind}.json", shared / "images" / kind)
        local = evaluate(zoo, ann, resolver, progress=False)
        with cluster.connected(two_nodes.address) as ray:
            on_ray = evaluate(zoo, ann, resolver, progress=False, ray=ray)
        assert local["models"] and on_ray == local
