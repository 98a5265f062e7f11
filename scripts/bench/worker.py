"""The worker protocol: each (file, thread count) is loaded and timed in a fresh child process
(`python -m posezoo.scripts.bench --one`, JSON lines on stdin/stdout), so the peak RSS it reports at exit
is that run's alone; `python -m posezoo.scripts.bench --baseline FMT` is a child that only imports the
runtime, whose peak is subtracted. `Worker` is the parent's end, `worker_main` the child's."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from posezoo.scripts.bench.runner import Runner, import_runtime
from posezoo.scripts.bench.targets import Target

REPO = Path(__file__).resolve().parents[2]


def _maxrss_kb() -> int:
    """This process's peak resident set size, KiB: VmHWM of /proc/self/status (the peak of this
    program's own memory map; getrusage's ru_maxrss also counts the parent's pages a fork copied
    before exec), else getrusage."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux



def worker_main() -> int:
    """`python -m posezoo.scripts.bench --one`: JSON lines in on stdin, JSON lines out on the original stdout
    (native libraries' prints go to stderr)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)

    def reply(obj):
        out.write(json.dumps(obj) + "\n")
        out.flush()

    model = None
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg["cmd"]
        try:
            if cmd == "load":
                model = Runner(msg["path"], msg["format"], msg["threads"], msg.get("inputs"), msg.get("hint"))
                reply({"ok": True, **model.info, "notes": model.notes})
            elif cmd == "warmup":
                for _ in range(msg["n"]):
                    model.run()
                reply({"ok": True})
            elif cmd == "run":
                start = time.monotonic_ns()
                t0 = time.perf_counter()
                model.run()
                ms = (time.perf_counter() - t0) * 1e3
                reply({"ok": True, "ms": ms, "start_ns": start})
            elif cmd == "exit":
                reply({"ok": True, "maxrss_kb": _maxrss_kb()})
                return 0
        except Exception as e:  # reported to the parent, which marks this file's rows
            reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
            if cmd == "load":
                return 1
    return 0


def baseline_main(fmt: str) -> int:
    """`python -m posezoo.scripts.bench --baseline FMT`: peak RSS of a process that only imports the runtime."""
    import_runtime(fmt)
    print(json.dumps({"maxrss_kb": _maxrss_kb()}))
    return 0


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def baseline_kb(fmt: str) -> int:
    res = subprocess.run([sys.executable, "-m", "posezoo.scripts.bench", "--baseline", fmt], capture_output=True,
                         text=True, env=_child_env(), cwd=str(REPO), check=True)
    return int(json.loads(res.stdout.strip().splitlines()[-1])["maxrss_kb"])


class Worker:
    """A child process holding one loaded file."""

    def __init__(self, target: Target, threads: int):
        self.target, self.threads = target, threads
        self.error: str | None = None
        self.info: dict = {}
        self.times: list[float] = []
        self.maxrss_kb: int | None = None
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "posezoo.scripts.bench", "--one"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1,
                                     env=_child_env(), cwd=str(REPO))

    def send(self, **msg) -> dict | None:
        if self.error:
            return None
        try:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            self.error = f"worker died ({msg['cmd']}): {self._stderr_tail()}"
            return None
        ans = json.loads(line)
        if not ans.get("ok"):
            self.error = ans.get("error", "failed")
            return None
        return ans

    def load(self):
        t = self.target
        ans = self.send(cmd="load", path=str(t.path), format=t.format, threads=self.threads, inputs=t.inputs,
                        hint=t.shape_hint)
        if ans:
            self.info = ans

    def _stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.log.seek(0)
        lines = [x for x in self.log.read().splitlines() if x.strip() and not x.startswith("INFO:")]
        return " | ".join(lines[-3:]) or f"exit code {self.proc.returncode}"

    def close(self):
        ans = self.send(cmd="exit")
        if ans:
            self.maxrss_kb = ans["maxrss_kb"]
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()

