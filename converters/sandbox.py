"""A child process for originals that execute graph code (SavedModel, tfjs graph, Keras,
PyTorch): it loads the original, runs it and exports it to ONNX, and can write only beneath its
own scratch folder and reach no network. TFLite originals stay in the build process: the
interpreter runs only its built-in kernels, no code from the file that could open files or
sockets.

The parent starts `python -m posezoo.converters.sandbox REQUESTS_FD REPLIES_FD SCRATCH` with two pipes of
its own; the child's stdout and stderr (TensorFlow's logs) go to an unlinked file that the parent
quotes when the child dies, so they cannot garble the protocol. The child points TMPDIR, HOME and
the frameworks' caches into SCRATCH and restricts itself before importing anything but the
standard library and posezoo.errors (Landlock and seccomp bind the calling thread and what it starts
later, and numpy's BLAS starts threads on import); it reports what it applied before it reads a
request:

- Landlock: every write-type filesystem right is handled and granted only beneath SCRATCH
  (regular files and folders: no links, FIFOs, sockets or devices) and on /dev/null; reading stays
  allowed everywhere. ABI >= 4: TCP bind and connect are denied; ABI >= 6: abstract unix sockets
  and signals are scoped to the sandbox. Landlock also denies it ptrace and mounts.
- seccomp (after no_new_privs): socket() of any family but AF_UNIX and every connect() fail with
  EACCES, io_uring_setup with EPERM; a system call of another architecture (or x32) kills it.

A kernel without either is refused (SandboxError, with what to do) unless
POSEZOO_UNSANDBOXED_ORIGINALS=1, which runs the child with what the kernel has and says so loudly.

What stays possible inside: reading any file the user can read (it leaves only through the
outputs and the ONNX file), metadata changes (chmod, utime, xattrs) Landlock does not cover,
datagrams to existing unix sockets, filling the disk beneath SCRATCH, and running forever.

The parent never unpickles what the child sends, nor the child what it gets: a message is a
length-prefixed JSON header followed by the arrays it announces, each as length-prefixed .npy
bytes read with allow_pickle=False. The parent copies the exported ONNX out of SCRATCH itself.
"""
from __future__ import annotations

import ctypes
import errno
import importlib
import io
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import traceback
import weakref
from pathlib import Path

from posezoo.errors import PosezooError

UNSANDBOXED_ENV = "POSEZOO_UNSANDBOXED_ORIGINALS"
MAX_FRAME = 256 << 20  # one array or header; model inputs and outputs are a few MB
LOG_TAIL = 3000  # characters of the child's log quoted when it dies

# Errors a caller handles by class (the CLI: exit 2 with the message), re-raised as themselves.
EXPECTED_ERRORS = {"SavedModelError": "posezoo.converters.saved_model", "KerasFileError": "posezoo.converters.keras_h5",
                   "CheckpointError": "posezoo.recipes.torch_checkpoint", "SandboxError": "posezoo.converters.sandbox",
                   "TfjsGraphError": "posezoo.converters.tfjs_graph"}


class SandboxError(PosezooError):
    """The sandbox cannot be set up, its child died or broke the protocol, or the original failed
    there in an unexpected way (the child's traceback is in the message)."""


# --- the protocol (both sides) ----------------------------------------------------------------

def send(stream, header: dict, arrays=()) -> None:
    import numpy as np

    frames = [json.dumps({**header, "arrays": len(arrays)}).encode()]
    for array in arrays:
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
        frames.append(buffer.getvalue())
    for frame in frames:
        stream.write(struct.pack("<Q", len(frame)) + frame)
    stream.flush()


def receive(stream) -> tuple[dict, list]:
    """The next message; EOFError when the other side has closed its end."""
    import numpy as np

    header = json.loads(_frame(stream))
    count = header.get("arrays") if isinstance(header, dict) else None
    if not isinstance(count, int) or count < 0:
        raise ValueError("message header without an array count")
    return header, [np.lib.format.read_array(io.BytesIO(_frame(stream)), allow_pickle=False) for _ in range(count)]


def _frame(stream) -> bytes:
    head = stream.read(8)
    if len(head) < 8:
        raise EOFError
    (size,) = struct.unpack("<Q", head)
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes (at most {MAX_FRAME})")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def _flatten(dicts: list[dict]) -> tuple[list[list[str]], list]:
    return [list(d) for d in dicts], [a for d in dicts for a in d.values()]


def _nest(names, arrays: list) -> list[dict]:
    if not (isinstance(names, list) and all(isinstance(n, list) and all(isinstance(s, str) for s in n) for n in names)
            and sum(map(len, names)) == len(arrays)):
        raise ValueError("names do not match the arrays sent")
    it = iter(arrays)
    return [{name: next(it) for name in group} for group in names]


# --- the parent's side ------------------------------------------------------------------------

class SandboxedOriginal:
    """An original opened in a sandboxed child, with the interface of posezoo.converters.originals
    (`run`, `to_onnx`, `fast_runner`) plus `run_many` (many feeds in one round trip) and `close`
    (also called when the object is garbage-collected or the interpreter exits).

    `module`: the family module that builds the original (recipes.<family>.original / .model),
    imported by name in the child; None for SavedModels and tfjs graph models."""

    def __init__(self, fmt: str, module: str | None, variant: str, recipe: dict, path: Path):
        self.what = f"{fmt} original {path}"
        self._scratch = Path(tempfile.mkdtemp(prefix="posezoo-sandbox-"))
        self._log = tempfile.TemporaryFile()  # unlinked: the child can only write to it
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "posezoo.converters.sandbox", str(requests_read), str(replies_write), str(self._scratch)],
            pass_fds=(requests_read, replies_write), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        os.close(requests_read)
        os.close(replies_write)
        self._requests, self._replies = open(requests_write, "wb"), open(replies_read, "rb")
        self._finalizer = weakref.finalize(self, _stop, self._process, self._requests, self._replies, self._log,
                                       self._scratch)
        try:
            status, _ = self._receive()  # sent before the child reads the file
            self.sandbox = str(status["sandbox"])
            if status["unsandboxed"]:
                print(f"WARNING: posezoo runs the {self.what} UNSANDBOXED ({self.sandbox}): code in it can write "
                      f"your files and reach the network. Unset {UNSANDBOXED_ENV} to refuse instead.",
                      file=sys.stderr, flush=True)
            self._call({"op": "open", "format": fmt, "module": module, "variant": variant, "recipe": recipe,
                        "path": str(Path(path).resolve())})
        except BaseException:
            self.close()
            raise

    def run(self, feeds: dict) -> dict:
        return self.run_many([feeds])[0]

    def run_many(self, feeds: list[dict]) -> list[dict]:
        names, arrays = _flatten(feeds)
        reply, outputs = self._call({"op": "run", "names": names}, arrays)
        try:
            return _nest(reply["names"], outputs)
        except (KeyError, ValueError) as e:
            raise SandboxError(f"{self.what}: the sandboxed child sent a malformed reply ({e})") from None

    def to_onnx(self, onnx_path: Path) -> Path:
        from .fileio import atomic_copy

        exported = self._scratch / "export.onnx"  # the child can write nowhere else
        self._call({"op": "to_onnx", "path": str(exported)})
        atomic_copy(exported, onnx_path)
        exported.unlink()
        return Path(onnx_path)

    def fast_runner(self):
        return None

    def close(self) -> None:
        """Stop the child and remove its scratch folder."""
        self._finalizer()

    def _call(self, request: dict, arrays=()) -> tuple[dict, list]:
        if not self._finalizer.alive:
            raise SandboxError(f"{self.what}: the sandbox was closed")
        try:
            send(self._requests, request, arrays)
        except BrokenPipeError:
            raise SandboxError(self._death()) from None
        return self._receive()

    def _receive(self) -> tuple[dict, list]:
        """The child's next reply, or its error raised here."""
        try:
            reply, outputs = receive(self._replies)
        except EOFError:
            raise SandboxError(self._death()) from None
        except (ValueError, RecursionError) as e:  # bad JSON, a frame too large, a pickled array
            raise SandboxError(f"{self.what}: the sandboxed child broke the protocol ({e})") from None
        if reply.get("ok") is True:
            return reply, outputs
        name, message = str(reply.get("error")), str(reply.get("message"))
        if name in EXPECTED_ERRORS:
            raise getattr(importlib.import_module(EXPECTED_ERRORS[name]), name)(message)
        raise SandboxError(f"{self.what} failed in its sandboxed child: {name}: {message}\n{reply.get('traceback', '')}")

    def _death(self) -> str:
        try:
            code = self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            code = self._process.wait()
        status = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
        self._log.seek(max(self._log.seek(0, os.SEEK_END) - LOG_TAIL, 0))
        tail = self._log.read().decode(errors="replace")
        tail = "".join(c if c.isprintable() or c in "\n\t" else "?" for c in tail)
        return f"{self.what}: the sandboxed child died ({status}); the end of its output:\n{tail}"


def _stop(process, requests, replies, log, scratch: Path) -> None:
    """Closing the request pipe ends the child's loop; a child that does not exit is killed."""
    requests.close()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    replies.close()
    log.close()
    shutil.rmtree(scratch, ignore_errors=True)


# --- the child's side -------------------------------------------------------------------------

def main(argv: list[str]) -> int:
    requests, replies, scratch = open(int(argv[0]), "rb"), open(int(argv[1]), "wb"), Path(argv[2])
    _caches_into(scratch)
    try:
        sandbox, unsandboxed = restrict(scratch)
    except SandboxError as e:
        send(replies, {"ok": False, "error": "SandboxError", "message": str(e)})
        return 1
    send(replies, {"ok": True, "sandbox": sandbox, "unsandboxed": unsandboxed})
    original = None
    while True:
        try:
            request, arrays = receive(requests)
        except EOFError:
            return 0
        try:
            if request["op"] == "open":
                from posezoo.converters.originals import open_in_process

                original = open_in_process(request["format"], request["module"], request["variant"],
                                           request["recipe"], Path(request["path"]))
                send(replies, {"ok": True})
            elif request["op"] == "run":
                names, outputs = _flatten([original.run(feeds) for feeds in _nest(request["names"], arrays)])
                send(replies, {"ok": True, "names": names}, outputs)
            elif request["op"] == "to_onnx":
                original.to_onnx(Path(request["path"]))
                send(replies, {"ok": True})
            else:
                raise ValueError(f"unknown request {request['op']!r}")
        except Exception as e:  # noqa: BLE001 - every failure goes back to the parent as a message
            send(replies, {"ok": False, "error": type(e).__name__, "message": str(e),
                           "traceback": traceback.format_exc()})


def _caches_into(scratch: Path) -> None:
    """Temporary files, HOME and the frameworks' caches beneath `scratch`, the only place the
    child may write."""
    for name, sub in (("TMPDIR", "tmp"), ("HOME", "home"), ("XDG_CACHE_HOME", "home/.cache"),
                      ("XDG_CONFIG_HOME", "home/.config"), ("KERAS_HOME", "home/.keras"),
                      ("TORCH_HOME", "home/.cache/torch"), ("MPLCONFIGDIR", "home/.config/matplotlib")):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(scratch / sub)
    sys.dont_write_bytecode = True


# Landlock (include/uapi/linux/landlock.h); the same system call numbers on every architecture.
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
FS_WRITE_FILE, FS_REMOVE_DIR, FS_REMOVE_FILE, FS_MAKE_CHAR = 1 << 1, 1 << 4, 1 << 5, 1 << 6
FS_MAKE_DIR, FS_MAKE_REG, FS_MAKE_SOCK, FS_MAKE_FIFO, FS_MAKE_BLOCK, FS_MAKE_SYM = (1 << n for n in range(7, 13))
FS_REFER, FS_TRUNCATE = 1 << 13, 1 << 14  # ABI 2, ABI 3
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1  # ABI 6
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


# seccomp: (AUDIT_ARCH, {system call: number}) per machine
SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, {"socket": 41, "connect": 42, "io_uring_setup": 425}),
    "aarch64": (0xC00000B7, {"socket": 198, "connect": 203, "io_uring_setup": 425}),
}
AF_UNIX = 1
RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS = 0x7FFF0000, 0x00050000, 0x80000000
BPF_LOAD_WORD, BPF_JEQ, BPF_JGE, BPF_RETURN = 0x20, 0x15, 0x35, 0x06
X32_SYSCALL_BIT = 0x40000000


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 where it has none (or this is not Linux)."""
    if platform.system() != "Linux":
        return 0
    return max(_syscall(SYS_LANDLOCK_CREATE_RULESET, 0, 0, LANDLOCK_CREATE_RULESET_VERSION), 0)


def restrict(scratch: Path) -> tuple[str, bool]:
    """Restrict this process (see the module docstring); returns what it applied and whether
    that falls short of the whole sandbox (allowed only with POSEZOO_UNSANDBOXED_ORIGINALS=1)."""
    missing, applied = [], []
    abi = landlock_abi()
    if platform.system() == "Linux":  # both need it: no later exec can gain privileges
        _checked(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(PR_SET_NO_NEW_PRIVS)")
    if abi:
        _landlock(abi, scratch)
        applied.append(f"Landlock ABI {abi}")
    else:
        missing.append("Landlock (Linux >= 5.13 with lsm=landlock)")
    if platform.machine() in SECCOMP_ARCHES and _seccomp(*SECCOMP_ARCHES[platform.machine()]):
        applied.append("seccomp")
    else:
        missing.append(f"seccomp filters on {platform.system()} {platform.machine()} (Linux x86_64 or aarch64)")
    if not missing:
        return " + ".join(applied), False
    if os.environ.get(UNSANDBOXED_ENV) != "1":
        raise SandboxError(
            f"this system lacks {' and '.join(missing)}, which posezoo needs to run SavedModel, Keras and "
            "PyTorch originals in a sandbox (they execute graph code from the file). Run posezoo on a Linux kernel "
            f"with both, or set {UNSANDBOXED_ENV}=1 to run such originals unsandboxed, if you trust the file.")
    return f"only {' + '.join(applied) or 'nothing'}; missing {' and '.join(missing)}", True


def _landlock(abi: int, scratch: Path) -> None:
    handled = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR | FS_MAKE_REG | FS_MAKE_SOCK
               | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM | (FS_REFER if abi >= 2 else 0)
               | (FS_TRUNCATE if abi >= 3 else 0))
    ruleset = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                           SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    ruleset_fd = _checked(_syscall(SYS_LANDLOCK_CREATE_RULESET, ruleset, ctypes.sizeof(ruleset), 0),
                          "landlock_create_ruleset")
    try:
        no_special_files = FS_MAKE_SYM | FS_MAKE_FIFO | FS_MAKE_SOCK | FS_MAKE_CHAR | FS_MAKE_BLOCK
        for path, allowed in ((scratch, handled & ~no_special_files),
                              (Path("/dev/null"), handled & (FS_WRITE_FILE | FS_TRUNCATE))):
            path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(allowed, path_fd)
                _checked(_syscall(SYS_LANDLOCK_ADD_RULE, ruleset_fd, LANDLOCK_RULE_PATH_BENEATH, rule, 0),
                         f"landlock_add_rule {path}")
            finally:
                os.close(path_fd)
        _checked(_syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset_fd, 0), "landlock_restrict_self")
    finally:
        os.close(ruleset_fd)


def _seccomp(audit_arch: int, numbers: dict[str, int]) -> bool:
    """Install the filter; False where the kernel has no seccomp filters."""
    def statement(code, k):
        return struct.pack("=HBBI", code, 0, 0, k)

    def jump(code, k, if_true, if_false):
        return struct.pack("=HBBI", code, if_true, if_false, k)

    program = [
        statement(BPF_LOAD_WORD, 4),  # seccomp_data.arch
        jump(BPF_JEQ, audit_arch, 1, 0),
        statement(BPF_RETURN, RET_KILL_PROCESS),
        statement(BPF_LOAD_WORD, 0),  # seccomp_data.nr
        jump(BPF_JGE, X32_SYSCALL_BIT, 0, 1),
        statement(BPF_RETURN, RET_KILL_PROCESS),
        jump(BPF_JEQ, numbers["io_uring_setup"], 0, 1),
        statement(BPF_RETURN, RET_ERRNO | errno.EPERM),
        jump(BPF_JEQ, numbers["connect"], 0, 1),
        statement(BPF_RETURN, RET_ERRNO | errno.EACCES),
        jump(BPF_JEQ, numbers["socket"], 1, 0),
        statement(BPF_RETURN, RET_ALLOW),
        statement(BPF_LOAD_WORD, 16),  # seccomp_data.args[0], low half (little-endian): the family
        jump(BPF_JEQ, AF_UNIX, 0, 1),
        statement(BPF_RETURN, RET_ALLOW),
        statement(BPF_RETURN, RET_ERRNO | errno.EACCES),
    ]
    code = ctypes.create_string_buffer(b"".join(program))
    fprog = _SockFprog(len(program), ctypes.cast(code, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) == 0:
        return True
    if ctypes.get_errno() == errno.EINVAL:  # no CONFIG_SECCOMP_FILTER
        return False
    raise SandboxError(f"installing the seccomp filter failed: {os.strerror(ctypes.get_errno())}")


def _syscall(number: int, *args) -> int:
    """syscall(2) with integer arguments and structures (passed by address)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc.syscall(ctypes.c_long(number), *(ctypes.c_void_p(ctypes.addressof(a)) if isinstance(a, ctypes.Structure)
                                                 else ctypes.c_long(a) for a in args))


def _checked(result: int, what: str) -> int:
    if result < 0:
        raise SandboxError(f"{what} failed: {os.strerror(ctypes.get_errno())}")
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
