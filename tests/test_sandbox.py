"""The sandboxed child for originals that execute graph code (converters/sandbox.py): what it can
and cannot do, the protocol that carries no pickles, and that results do not change inside it."""
import io
import json
import os
import platform
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from posezoo.converters.sandbox import SECCOMP_ARCHES, SandboxError, landlock_abi, receive, send

needs_sandbox = pytest.mark.skipif(not landlock_abi() or platform.machine() not in SECCOMP_ARCHES,
                                   reason="this kernel has no Landlock or this machine no seccomp support here")
LITEHRNET = "litehrnet-18-coco-256x192"

PROBE = """
import json, os, pathlib, socket, sys
from posezoo.converters.sandbox import restrict
restrict(pathlib.Path(sys.argv[1]))

def outcome(action):
    try:
        action()
        return "ok"
    except OSError as e:
        return type(e).__name__

results = {}
"""


def in_sandbox(code: str, scratch: Path, env: dict | None = None) -> dict:
    """Run `code` (which fills `results`) in a fresh process restricted to `scratch`."""
    done = subprocess.run([sys.executable, "-c", PROBE + textwrap.dedent(code) + "\nprint(json.dumps(results))",
                           str(scratch)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_the_protocol_round_trips_arrays_and_refuses_pickles():
    stream = io.BytesIO()
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(7, np.uint8), np.zeros((0, 4), np.int64)]
    send(stream, {"op": "run", "names": [["a", "b", "c"]]}, arrays)
    stream.seek(0)
    header, got = receive(stream)
    assert header == {"op": "run", "names": [["a", "b", "c"]], "arrays": 3}
    assert all(g.dtype == a.dtype and np.array_equal(g, a) for g, a in zip(got, arrays))

    pickled = io.BytesIO()
    np.lib.format.write_array(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    header = json.dumps({"ok": True, "arrays": 1}).encode()
    hostile = b"".join(struct.pack("<Q", len(frame)) + frame for frame in (header, pickled.getvalue()))
    with pytest.raises(ValueError, match="allow_pickle"):
        receive(io.BytesIO(hostile))


@needs_sandbox
def test_inside_the_sandbox_only_the_scratch_folder_and_dev_null_are_writable(tmp_path):
    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    (outside / "kept.txt").write_text("mine")
    results = in_sandbox(f"""
        scratch, outside = pathlib.Path(sys.argv[1]), pathlib.Path({str(outside)!r})
        results["write outside"] = outcome(lambda: (outside / "new.txt").write_text("x"))
        results["append outside"] = outcome(lambda: open(outside / "kept.txt", "a").close())
        results["delete outside"] = outcome(lambda: (outside / "kept.txt").unlink())
        results["folder outside"] = outcome(lambda: (outside / "folder").mkdir())
        results["rename outside"] = outcome(lambda: os.rename(outside / "kept.txt", outside / "moved.txt"))
        results["write home"] = outcome(lambda: open(os.path.expanduser("~/.posezoo-sandbox-probe"), "w").close())
        results["read outside"] = outcome(lambda: (outside / "kept.txt").read_text())
        results["folder inside"] = outcome(lambda: (scratch / "deep").mkdir())
        results["write inside"] = outcome(lambda: (scratch / "deep" / "f").write_text("x"))
        results["delete inside"] = outcome(lambda: (scratch / "deep" / "f").unlink())
        results["symlink inside"] = outcome(lambda: os.symlink("/etc/passwd", scratch / "link"))
        results["dev null"] = outcome(lambda: open(os.devnull, "w").write("x"))
    """, scratch)
    refused = ("write outside", "append outside", "delete outside", "folder outside", "rename outside", "write home",
               "symlink inside")
    assert {k: results[k] for k in refused} == dict.fromkeys(refused, "PermissionError")
    assert {k: v for k, v in results.items() if k not in refused} == dict.fromkeys(
        ("read outside", "folder inside", "write inside", "delete inside", "dev null"), "ok")
    assert sorted(p.name for p in outside.iterdir()) == ["kept.txt"] and (outside / "kept.txt").read_text() == "mine"
    assert not Path(os.path.expanduser("~/.posezoo-sandbox-probe")).exists()


@needs_sandbox
def test_inside_the_sandbox_no_network_socket_and_no_connection_can_be_made(tmp_path):
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(tmp_path / "s"))
    listener.listen()
    tcp = socket.create_server(("127.0.0.1", 0))
    try:
        results = in_sandbox(f"""
            results["inet"] = outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            results["inet udp"] = outcome(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            results["inet6"] = outcome(lambda: socket.socket(socket.AF_INET6))
            results["netlink"] = outcome(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW))
            results["tcp connect"] = outcome(lambda: socket.create_connection(("127.0.0.1", {tcp.getsockname()[1]})))
            results["unix socket"] = outcome(lambda: socket.socket(socket.AF_UNIX).close())
            results["unix connect"] = outcome(lambda: socket.socket(socket.AF_UNIX).connect({str(tmp_path / "s")!r}))
            results["socketpair"] = outcome(socket.socketpair)
        """, tmp_path)
    finally:
        listener.close()
        tcp.close()
    assert results == {"inet": "PermissionError", "inet udp": "PermissionError", "inet6": "PermissionError",
                       "netlink": "PermissionError", "tcp connect": "PermissionError", "unix socket": "ok",
                       "unix connect": "PermissionError", "socketpair": "ok"}


@pytest.mark.skipif(landlock_abi() < 6, reason="Landlock scopes signals from ABI 6 on")
def test_inside_the_sandbox_no_signal_reaches_an_outside_process(tmp_path):
    results = in_sandbox("results['signal parent'] = outcome(lambda: os.kill(os.getppid(), 0))", tmp_path)
    assert results == {"signal parent": "PermissionError"}


@needs_sandbox
def test_without_landlock_it_refuses_unless_told_to_run_unsandboxed(tmp_path):
    code = textwrap.dedent(f"""
        import pathlib, posezoo.converters.sandbox as sandbox
        sandbox.landlock_abi = lambda: 0  # as on a kernel without Landlock
        try:
            print(sandbox.restrict(pathlib.Path({str(tmp_path)!r})))
        except sandbox.SandboxError as e:
            print("refused:", e)
    """)
    env = {k: v for k, v in os.environ.items() if k != "POSEZOO_UNSANDBOXED_ORIGINALS"}
    refused = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env).stdout
    assert refused.startswith("refused: this system lacks Landlock") and "POSEZOO_UNSANDBOXED_ORIGINALS=1" in refused
    allowed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**env, "POSEZOO_UNSANDBOXED_ORIGINALS": "1"}).stdout
    assert allowed.strip() == "('only seccomp; missing Landlock (Linux >= 5.13 with lsm=landlock)', True)"


def _litehrnet(path: Path) -> Path:
    from posezoo.recipes.torch_checkpoint import write_random_official_checkpoint

    keys = json.loads((Path(__file__).parent / "data" / "official_keys" / "litehrnet-18-coco.json").read_text())
    return write_random_official_checkpoint(keys["keys"], path)


@needs_sandbox
def test_a_malicious_pytorch_checkpoint_is_refused_and_creates_nothing(tmp_path):
    import torch

    from posezoo.converters.originals import open_original
    from posezoo.recipes import select
    from posezoo.recipes.torch_checkpoint import CheckpointError

    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return open, (str(target), "w")

    torch.save({"state_dict": {"backbone.weight": Payload()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        open_original(select([LITEHRNET])[0], tmp_path / "evil.pth")
    assert not target.exists()
    torch.load(tmp_path / "evil.pth", weights_only=False)  # the control: unpickled in full, the file acts
    assert target.exists()


@needs_sandbox
def test_a_sandboxed_pytorch_original_computes_exactly_what_it_computes_in_process(tmp_path):
    import onnxruntime as ort

    from posezoo.converters.originals import open_in_process, open_original
    from posezoo.recipes import select

    variant = select([LITEHRNET])[0]
    checkpoint = _litehrnet(tmp_path / "litehrnet.pth")
    spec = variant.recipe["input"]
    feeds = [{spec["name"]: np.random.default_rng(seed).random(spec["shape"], dtype=np.float32)} for seed in (0, 1)]
    sandboxed = open_original(variant, checkpoint)
    assert sandboxed.sandbox.startswith("Landlock ABI") and sandboxed.fast_runner() is None
    got = sandboxed.run_many(feeds)
    in_process = open_in_process("torch", "posezoo.recipes.litehrnet.model", variant.variant, variant.recipe, checkpoint)
    for ours, feed in zip(got, feeds):
        expected = in_process.run(feed)
        assert ours.keys() == expected.keys()
        assert all(ours[k].dtype == expected[k].dtype and np.array_equal(ours[k], expected[k]) for k in ours)
    assert all(np.array_equal(v, got[0][k]) for k, v in sandboxed.run(feeds[0]).items())

    onnx_path = sandboxed.to_onnx(tmp_path / "out" / "litehrnet.onnx")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (heatmaps,) = session.run(None, feeds[0])
    np.testing.assert_allclose(heatmaps, got[0]["heatmaps"], atol=1e-4)

    scratch = sandboxed._scratch
    sandboxed.close()
    assert sandboxed._process.returncode == 0 and not scratch.exists()
    with pytest.raises(SandboxError, match="closed"):
        sandboxed.run(feeds[0])


@needs_sandbox
def test_a_child_that_dies_is_reported_with_its_exit_status(tmp_path):
    from posezoo.converters.originals import open_original
    from posezoo.recipes import select

    variant = select([LITEHRNET])[0]
    sandboxed = open_original(variant, _litehrnet(tmp_path / "litehrnet.pth"))
    sandboxed._process.kill()
    with pytest.raises(SandboxError, match=r"the sandboxed child died \(killed by signal 9\)"):
        sandboxed.run({variant.recipe["input"]["name"]: np.zeros(variant.recipe["input"]["shape"], np.float32)})
    sandboxed.close()
