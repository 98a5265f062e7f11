"""Builds and evaluations on a Ray cluster: `posezoo build|eval ... --ray [ADDRESS]`.

The driver (the process the user started) does everything that touches the user's disk: it
resolves and verifies every original (cache, mirror, npm), checks fingerprints, and writes every
artifact and the manifest (posezoo.converters.publish, as `-j` does). Workers get bytes through
Ray's object store (the original, the publisher's files, the photos) and give bytes back (the
staged files of one model), so a node needs neither the mirror, the cache nor a network: only
the same toolchain and the same posezoo, which every task checks before it starts (a worker
whose set differs is refused, never a mixed-toolchain manifest). Ray retries a task whose worker
process dies (`RETRIES`); a task that raises is not retried (a bad recipe fails the same way twice).
"""
from __future__ import annotations

import hashlib
import platform
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

from posezoo.errors import PosezooError

from . import quiet
from .sources import default_cache_dir

RETRIES = 3  # times Ray re-runs a task whose worker process or node died
LOCAL = "local"  # --ray without an address: Ray's own name for "start a local instance"


class ClusterError(PosezooError):
    """Ray is missing, the cluster cannot be reached, or a worker's toolchain differs from the driver's."""


@lru_cache(maxsize=None)
def toolchain() -> dict:
    """What must be identical on the driver and every worker: Python, the pinned tools, posezoo's code."""
    from .fingerprint import package_digest, tool_versions

    return {"python": platform.python_version(), "tools": tool_versions(), "posezoo_code": package_digest()}


def toolchain_differences(driver: dict, worker: dict) -> list[str]:
    """Each way `worker`'s toolchain differs from `driver`'s, in words."""
    found = []
    if driver["python"] != worker["python"]:
        found.append(f"python {worker['python']} (driver {driver['python']})")
    for tool in sorted(set(driver["tools"]) | set(worker["tools"])):
        if driver["tools"].get(tool) != worker["tools"].get(tool):
            found.append(f"{tool} {worker['tools'].get(tool)} (driver {driver['tools'].get(tool)})")
    if driver["posezoo_code"] != worker["posezoo_code"]:
        found.append(f"posezoo code {worker['posezoo_code'][:12]} (driver {driver['posezoo_code'][:12]})")
    return found


def check_toolchain(driver: dict) -> None:
    """On a worker: refuse to work for a driver whose toolchain is not this one."""
    found = toolchain_differences(driver, toolchain())
    if found:
        raise ClusterError(f"Ray worker on {platform.node()} has another toolchain than the driver: "
                           f"{'; '.join(found)}. Install the same pinned toolchain and posezoo on every node "
                           "(README: 'Building on a Ray cluster') and start its Ray again")


def add_arguments(parser, what: str) -> None:
    parser.add_argument("--ray", nargs="?", const=LOCAL, metavar="ADDRESS",
                        help=f"{what}: on a local Ray instance, or on the cluster at ADDRESS "
                             "(`ray start --head` prints it); needs pip install 'posezoo[ray]'")
    parser.add_argument("--ray-cpus", type=_positive, default=1.0, metavar="N", help="CPUs Ray reserves per task")


def _positive(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of CPUs")
    return value


@contextmanager
def connected(address: str, log=print):
    """Ray, connected: `address` LOCAL starts a local instance, otherwise joins that cluster (left
    running when we disconnect). Every node is asked for its toolchain before any work is scheduled."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install 'posezoo[ray]'") from None
    if address != LOCAL:
        _check_reachable(address)
    try:
        context = ray.init(address=address, include_dashboard=False, logging_level="warning",
                           configure_logging=True)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {e}. Start it with `ray start --head` "
                           "and pass the address it prints") from None
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        log(f"Ray: {len(nodes)} node(s), {int(ray.cluster_resources().get('CPU', 0))} CPUs "
            f"({'local instance' if address == LOCAL else context.address_info.get('address', address)})")
        _check_nodes(nodes)
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast where nothing answers at a cluster's HOST:PORT (ray.init would retry for minutes)."""
    import socket

    if "://" in address:
        raise ClusterError(f"--ray {address}: Ray Client addresses are not supported; pass the HOST:PORT that "
                           "`ray start --head` prints (the driver must reach the cluster's object store)")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address}: expected the HOST:PORT that `ray start --head` prints")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"--ray {address}: nothing answers there ({e.strerror or e}). Start the cluster with "
                           "`ray start --head` on that machine, or check the address and the firewall") from None


def _check_nodes(nodes: list[dict]) -> None:
    """Refuse the cluster before scheduling when any node's toolchain differs from the driver's."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    probe = ray.remote(num_cpus=0)(_worker_toolchain)
    driver = toolchain()
    answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                       .remote() for n in nodes])
    problems = [f"{node}: {'; '.join(found)}" for node, worker in answers
                for found in [toolchain_differences(driver, worker)] if found]
    if problems:
        raise ClusterError("Ray nodes with another toolchain than the driver: " + " | ".join(problems)
                           + ". Install the same pinned toolchain and posezoo on every node (README: 'Building "
                             "on a Ray cluster')")


def _worker_toolchain() -> tuple[str, dict]:
    return platform.node(), toolchain()


# --- shipping files ---------------------------------------------------------------------------------

@dataclass
class Shipped:
    """A verified file travelling to a worker, with the files read beside it (a tfjs model's
    weights): their bytes, and the ResolvedFile the driver made of it."""
    resolved: object  # posezoo.converters.sources.ResolvedFile
    data: bytes
    companions: tuple[bytes, ...] = ()  # in the order of resolved.companions

    @classmethod
    def of(cls, resolved) -> "Shipped":
        return cls(resolved, Path(resolved.path).read_bytes(),
                   tuple(Path(c.path).read_bytes() for c in resolved.companions))

    def land(self, folder: Path):
        """Write the bytes under `folder` (the same file names, side by side) and check them; the
        ResolvedFile there."""
        files = [(self.resolved, self.data), *zip(self.resolved.companions, self.companions)]
        for resolved, data in files:  # all checked before any is written
            if hashlib.sha256(data).hexdigest() != resolved.sha256:
                raise ClusterError(f"{Path(resolved.path).name}: the bytes that reached the worker do not have "
                                   f"sha256 {resolved.sha256}")
        landed = []
        for resolved, data in files:
            path = Path(folder) / Path(resolved.path).name
            path.write_bytes(data)
            landed.append(replace(resolved, path=path))
        return replace(landed[0], companions=tuple(landed[1:]))


def pack_folder(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by its path relative to it."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def unpack_folder(files: dict[str, bytes], folder: Path) -> Path:
    for rel, data in files.items():
        path = Path(folder) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return Path(folder)


# --- build ------------------------------------------------------------------------------------------

def run_build_jobs(ray, build_variant, inputs, stagings: list[Path], opts, cpus_per_task: float):
    """The Ray twin of pipeline._run_jobs: one task per model, each running `build_variant`
    (pipeline's, passed in so that this module does not import the pipeline that calls it);
    yields (index, result) as each finishes, after writing the files its worker staged into that
    model's staging folder."""
    photos = ray.put((Path(opts.calibration_images).resolve().name, pack_folder(opts.calibration_images)))
    task = ray.remote(num_cpus=cpus_per_task, max_retries=RETRIES, retry_exceptions=False)(_build_on_worker)
    driver = toolchain()
    # the driver's cache folder is not a worker's: a worker keeps learned rounding in its own default cache
    worker_opts = replace(opts, log=print, progress=False, calibration_images=None, jobs=1, cache_dir=None)
    submitted = time.time()
    pending = {task.remote(build_variant, driver, quiet.verbose(), variant, original and Shipped.of(original),
                           {key: Shipped.of(file) for key, file in vendor.items()}, photos, worker_opts): k
               for k, (variant, original, vendor) in enumerate(inputs)}
    try:
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            k = pending.pop(done)
            result, files = result_of(ray, done)
            unpack_folder(files, stagings[k])
            opts.log(f"[{inputs[k][0].id}] from Ray: {sum(map(len, files.values())) / 1e6:.1f} MB of files, "
                     f"{time.time() - submitted:.1f} s after submission, {result.seconds:.1f} s of it building")
            yield k, result
    finally:
        for ref in pending:  # interrupted: nothing else lands; the models already published stay
            ray.cancel(ref, force=True)


def result_of(ray, ref):
    """A finished task's value; our own errors keep their message, without Ray's wrapping."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, PosezooError):
            raise e.cause from None
        raise


def _build_on_worker(build_variant, driver: dict, verbose: bool, variant, original: Shipped | None, vendor: dict,
                     photos, opts):
    """On a worker: build one model from shipped bytes into a private folder; return its result
    and every file it staged (relative paths, as the driver's staging folder will hold them)."""
    quiet.configure(verbose)
    check_toolchain(driver)
    name, files = photos
    with tempfile.TemporaryDirectory(prefix=f"posezoo-ray-{variant.id}-") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "inputs"
        inputs.mkdir()
        images = unpack_folder(files, tmp / name)
        resolved = original.land(inputs) if original else None
        landed = {key: shipped.land(_folder(inputs / f"{key[0]}-{key[1]}")) for key, shipped in vendor.items()}
        staging = _folder(tmp / "staging")
        here = replace(opts, calibration_images=images, cache_dir=default_cache_dir())
        result = build_variant(variant, resolved, here, staging, landed)
        return result, pack_folder(staging)


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
