"""Grid executors: run a grid's configs in this process (``local``), a local process pool (``processes``), on
a Ray cluster (``ray``) or as SLURM jobs (``slurm``, ``kdlib.slurm``). Whichever runs them, every worker opens the
same store, writes its own records and the driver reads them back, so a store on a filesystem that every node
mounts works for a cluster.

Scheduling: each distinct teacher and score cache the grid needs is a task of its own, submitted first; a run is
submitted once the teacher and scores it needs exist, so no worker waits on another's lock. Correctness does not
rest on that order: teachers and scores are computed under ``Store.lock`` (``flock``) and so is every run, so two
workers (or two grids sharing a store) never train the same teacher or the same run twice; a killed worker's lock
is released by the kernel and its half-done work leaves no record.

    run_grid(configs, store)                                        # local: this process, one run at a time
    run_grid(configs, store, executor="processes", workers=4)       # 4 spawned processes, cores // 4 threads each
    run_grid(configs, store, executor="processes", runs_per_gpu=2)  # 2 workers per visible GPU, each on its own
    run_grid(configs, "/shared/store", executor="ray", address="auto", num_cpus=4, num_gpus=0.5)  # a Ray cluster
    run_grid(configs, "/shared/store", executor="slurm", slurm={"partition": "gpu", "gpus": 1, "time": 240})

GPUs. ``processes`` spreads its workers over the visible CUDA devices (``devices``, default all of them when
``device`` is 'auto' or 'cuda'): worker i runs on ``devices[i % len(devices)]``, ``runs_per_gpu`` workers per
device at most (several small runs share a GPU); each worker sets that device as its current one and opens its
Study on it. A Ray task asks for ``num_gpus`` (a fraction shares a GPU) and a SLURM job for ``slurm.gpus``; with
``device='auto'`` each uses the GPU its scheduler gives it, and the CPU when it asks for none.

Notes. A script using ``processes`` needs the ``if __name__ == "__main__":`` guard (spawned workers import it);
notebooks need nothing. For Ray, every node must have kdlib installed and see the store at the same path; without
``address`` a local instance is started (with ``workers`` CPUs) and shut down afterwards, while one the caller
started (``ray.init``) is used and left running. Results are bitwise equal across executors when the torch thread
count is equal (a different count can change the last bits of the losses, in bf16 and in fp32).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from .store import Store, canonical
from .validate import check_choice, check_number, check_positive

EXECUTORS = ("local", "processes", "ray", "torchrun", "slurm")


def check_executor(executor: str) -> str:
    """``executor`` must be one of ``EXECUTORS`` (a ValueError naming them otherwise)."""
    return check_choice(executor, "executor", EXECUTORS)


# --- what one worker does ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerSpec:
    """How a worker opens the study: the study class (``kdlib.study.Study``, passed in so that this module sits
    below it), the store folder, device (a pool worker's own GPU replaces it), data root, progress bars, torch
    threads, the least seconds between in-run checkpoints (None: the study's default), and the group size and mode
    of its chunks (``run_chunk``)."""

    store: str
    device: str = "auto"
    data_root: Optional[str] = None
    progress: bool = False
    threads: Optional[int] = None
    study_class: Any = None
    checkpoint_every: Optional[float] = None
    group_size: Any = "auto"
    group_mode: str = "auto"


# The device a ``processes`` pool worker was given by its initializer (``_init_process``); None elsewhere.
_worker_device: Optional[str] = None


CHUNK_MAX = 64  # runs handed to one worker at a time when the group size is chosen there ('auto')


def chunk_runs(configs: Sequence[Any], group_size: int | str = "auto", workers: int = 1) -> list[list[Any]]:
    """The distinct runs of ``configs`` (by key) in chunks that a worker trains as groups: runs of one
    ``group_key`` only, at most ``group_size`` of them (with 'auto': ``CHUNK_MAX``, fewer when that spreads a group
    key over ``workers`` workers). A streamed-folder run is a chunk of its own. Chunks come ordered by dataset,
    then group key, so the teachers and scores a chunk needs are usually made by the chunk before it."""
    buckets: dict[str, list[Any]] = {}
    seen = set()
    for cfg in sorted(configs, key=lambda c: (c.dataset, c.model, c.fraction, c.seed, c.method)):
        key = cfg.key()
        if key in seen:
            continue
        seen.add(key)
        bucket = key if cfg.data is not None else cfg.group_key()
        buckets.setdefault(bucket, []).append(cfg)
    chunks = []
    for runs in buckets.values():
        size = group_size if group_size != "auto" else max(1, min(CHUNK_MAX, -(-len(runs) // max(1, workers))))
        chunks += [runs[i:i + size] for i in range(0, len(runs), size)]
    return chunks


def score_key(cfg: Any) -> Optional[str]:
    """The store key of the score cache ``cfg`` needs, or None (``ScoreSpec``; for scheduling only, correctness
    rests on the lock)."""
    spec = cfg.score_spec()
    return None if spec is None else spec.key()


def teacher_key(cfg: Any) -> Optional[str]:
    """The store key of the teacher ``cfg`` distils from, or None."""
    return cfg.teacher_config().key() if cfg.resolved().uses_teacher else None


def work(task: str, cfg: Any, spec: WorkerSpec) -> dict:
    """One unit of work in a worker: ``task`` is 'teacher' or 'scores' (of the run ``cfg``) or 'runs' (``cfg``: a
    chunk of runs, trained in groups). Returns {'keys', 'status', ...}; the records themselves stay in the store.
    A teacher or score computation that fails (diverges, or any other error) is not an error here: the runs that
    need it retry it and record the failure."""
    import torch  # here, not at module level: a driver that only schedules never loads torch

    from .train import TrainingDiverged

    if spec.threads:
        torch.set_num_threads(spec.threads)
    extra = {} if spec.checkpoint_every is None else {"checkpoint_every": spec.checkpoint_every}
    study = spec.study_class(spec.store, _worker_device or spec.device, spec.data_root, spec.progress, **extra)
    if task == "runs":
        recs = study.run_chunk(list(cfg), spec.group_size, spec.group_mode)
        return {"keys": [r["key"] for r in recs], "status": [r["status"] for r in recs], "pid": os.getpid()}
    try:
        if task == "teacher":
            study.teacher(cfg.teacher_config())
        else:
            study.scores(cfg)
    except Exception as err:  # noqa: BLE001 - the runs that need it record the failure (Study.run)
        msg = str(err) if isinstance(err, TrainingDiverged) else f"{type(err).__name__}: {err}"
        return {"key": None, "status": "failed", "error": msg, "pid": os.getpid()}
    return {"key": None, "status": "done", "pid": os.getpid()}


def worker_devices(workers: int, devices: Sequence[str], runs_per_gpu: int = 1) -> list[str]:
    """The device of each of ``workers`` pool workers: round-robin over ``devices``, at most ``runs_per_gpu``
    workers on one device (a ValueError naming both when ``workers`` needs more)."""
    check_positive(runs_per_gpu, "runs_per_gpu", integer=True)
    check_positive(workers, "workers", integer=True)
    if not devices:
        raise ValueError("devices must name at least one device, e.g. ['cuda:0', 'cuda:1']")
    if workers > len(devices) * runs_per_gpu:
        raise ValueError(f"workers={workers} is more than {len(devices)} GPU(s) x runs_per_gpu={runs_per_gpu}; "
                         f"raise runs_per_gpu (several runs share a GPU) or lower workers")
    return [str(devices[i % len(devices)]) for i in range(workers)]


def gpu_devices(device: str, devices: Optional[Sequence[str]]) -> list[str]:
    """The GPUs a ``processes`` pool spreads its workers over: ``devices`` when given, else every visible CUDA
    device when ``device`` is 'auto' or 'cuda', else none (every worker on ``device``)."""
    if devices is not None:
        if isinstance(devices, str) or not isinstance(devices, Sequence):
            raise ValueError(f"devices must be a list of device names such as ['cuda:0', 'cuda:1'], got {devices!r}")
        if str(device) not in ("auto", "cuda"):
            raise ValueError(f"devices={list(devices)} spreads workers over GPUs; it needs device='auto' or 'cuda', "
                             f"not {str(device)!r}")
        return [str(d) for d in devices]
    if str(device) not in ("auto", "cuda"):
        return []
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _init_process(threads: int, parent: int, devices: Sequence[str] = (), counter: Any = None) -> None:
    """A pool worker's set-up: its torch threads, its device (the next of ``devices``, by the order in which the
    workers start; ``counter`` is the shared count), and a watchdog that ends it when the driver dies (a killed
    driver would otherwise leave its workers waiting forever; work cut short leaves no record, only a retry)."""
    import threading

    import torch

    global _worker_device
    torch.set_num_threads(threads)
    if devices:
        with counter.get_lock():
            index = counter.value
            counter.value += 1
        _worker_device = devices[index % len(devices)]
        if _worker_device.startswith("cuda") and torch.cuda.is_available():
            torch.cuda.set_device(_worker_device)  # what a stray allocation without a device uses

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="kdlib-parent-watchdog", daemon=True).start()


# --- pools: submit / wait / result / close over concurrent.futures and Ray ------------------------------------------
class _ProcessPool:
    def __init__(self, workers: int, threads: int, devices: Sequence[str] = ()) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_process,
                                        initargs=(threads, os.getpid(), list(devices), ctx.Value("i", 0)))

    def submit(self, task: str, cfg: Any, spec: WorkerSpec) -> Future:
        return self.pool.submit(work, task, cfg, spec)

    def wait(self, handles: list) -> list:
        done, _ = wait_futures(handles, return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Future) -> dict:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return handle.result()
        except BrokenProcessPool as err:
            raise RuntimeError("a worker process of executor='processes' died (killed, out of memory, or the script "
                               "calling run_grid lacks the `if __name__ == \"__main__\":` guard that spawned "
                               "workers need); finished records are kept, run the grid again to resume") from err

    def cancel(self, handles: list) -> None:
        for h in handles:
            h.cancel()

    def close(self, cancel: bool) -> None:
        self.pool.shutdown(wait=True, cancel_futures=cancel)


class _RayPool:
    def __init__(self, address: Optional[str], num_cpus: float, num_gpus: float, workers: Optional[int],
                 progress: bool) -> None:
        try:
            import ray
        except ImportError:  # pragma: no cover - ray is a test dependency
            raise ImportError("executor='ray' needs Ray: pip install 'kdlib[ray]'") from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            # address=None starts a local instance (workers CPUs, default all); "auto" or "ray://host:10001" joins one
            ray.init(address=address, num_cpus=workers if address is None else None, include_dashboard=False,
                     log_to_driver=progress)
        self.remote = ray.remote(work).options(num_cpus=num_cpus, num_gpus=num_gpus)

    def submit(self, task: str, cfg: Any, spec: WorkerSpec):
        return self.remote.remote(task, cfg, spec)

    def wait(self, handles: list) -> list:
        done, _ = self.ray.wait(handles, num_returns=1)
        return done

    def result(self, handle: Any) -> dict:
        return self.ray.get(handle)

    def cancel(self, handles: list) -> None:
        for h in handles:
            self.ray.cancel(h)

    def close(self, cancel: bool) -> None:
        if self.started:
            self.ray.shutdown()


# --- the driver ----------------------------------------------------------------------------------------------------
def run_parallel(configs: Sequence[Any], store: Store | str, device: str = "auto", data_root: Optional[str] = None,
                 progress: bool = True, executor: str = "processes", workers: Optional[int] = None,
                 address: Optional[str] = None, num_cpus: float = 1, num_gpus: float = 0,
                 study_class: Any = None, runs_per_gpu: int = 1, devices: Optional[Sequence[str]] = None,
                 slurm: Optional[Any] = None, group_size: int | str = "auto", group_mode: str = "auto") -> list[dict]:
    """Every config's record (in the order of ``configs``), computed on ``executor`` ('processes', 'ray' or
    'slurm') by workers that each open a ``study_class`` (``kdlib.study.Study``; ``run_grid`` passes it).

    Finished runs are read from the store and not resubmitted; equal runs (same resolved key) run once.
    ``workers`` is the pool size (default: all cores, or ``runs_per_gpu`` per GPU when the pool has GPUs; for
    Ray, the CPUs of a local instance it starts). The pool's GPUs are ``devices`` or every visible one
    (``gpu_devices``); worker i runs on GPU i mod their number (``worker_devices``).
    ``num_cpus``/``num_gpus`` are each Ray task's request: with ``num_gpus`` > 0 (1, or 0.5 to share a GPU)
    ``device='auto'`` picks the GPU Ray assigns; with ``num_gpus=0`` it means the CPU, so that a task never uses
    a GPU it did not ask for. ``slurm`` is the SLURM jobs' mapping (``kdlib.slurm.SlurmOptions``; ``gpus`` plays
    the part of ``num_gpus``). A pool worker uses cores // workers torch threads, a Ray task ``num_cpus``, a
    SLURM job ``slurm.cpus``. The runs go to the workers in chunks (``chunk_runs``) that each trains as groups of
    ``group_size`` runs in ``group_mode`` ('auto': chosen on the worker's device). A run that fails is a failed
    record, not an error; an error outside a run (a worker that dies) cancels the work not yet started and is
    raised here (finished records are kept: run the grid again to resume).
    """
    check_executor(executor)
    if executor in ("local", "torchrun"):
        raise ValueError(f"run_parallel runs executor='processes', 'ray' or 'slurm'; use run_grid for {executor!r}")
    check_positive(runs_per_gpu, "runs_per_gpu", integer=True)
    if devices is not None and executor != "processes":
        raise ValueError(f"devices spreads the workers of executor='processes' over GPUs, not executor={executor!r} "
                         f"(Ray and SLURM hand each task its GPU: num_gpus, slurm={{'gpus': 1}})")
    gpus = gpu_devices(device, devices) if executor == "processes" else []
    if workers is not None:
        check_positive(workers, "workers", integer=True)
    wanted = workers or (len(gpus) * runs_per_gpu if gpus else os.cpu_count() or 1)
    if gpus:
        worker_devices(wanted, gpus, runs_per_gpu)  # too many workers for the GPUs: named before anything starts
    options = None
    if executor == "slurm":
        try:
            from .slurm import SlurmOptions, job_device
        except ImportError:
            raise ImportError("executor='slurm' needs submitit: pip install 'kdlib[slurm]'") from None
        options = slurm if isinstance(slurm, SlurmOptions) else SlurmOptions.from_dict(slurm)
        device = job_device(device, options)
    elif slurm is not None:
        raise ValueError(f"slurm={slurm!r} sets SLURM jobs; it needs executor='slurm', not {executor!r}")
    if executor == "ray":
        num_cpus = check_positive(num_cpus, "num_cpus")
        num_gpus = check_number(num_gpus, "num_gpus", low=0, note=" (a fraction shares a GPU: 0.5 runs two per GPU)")
    store = store if isinstance(store, Store) else Store(store)
    root = str(store.root.resolve())
    keys = [c.key() for c in configs]
    records: dict[str, dict] = {}
    todo: dict[str, Any] = {}
    for key, cfg in zip(keys, configs):
        if key in records or key in todo:
            continue
        rec = store.done("runs", key)
        if rec is not None:
            records[key] = rec
        else:
            todo[key] = cfg
    if todo:
        cores = os.cpu_count() or 1
        checkpoint_every = None
        if executor == "processes":
            n = max(1, min(wanted, len(todo)))
            threads = max(1, cores // n)
            pool: Any = _ProcessPool(n, threads, worker_devices(n, gpus, runs_per_gpu) if gpus else ())
        elif executor == "slurm":
            from .slurm import SlurmPool

            threads = options.cpus
            checkpoint_every = options.checkpoint_every
            pool = SlurmPool(options, store.root, work)
        else:
            threads = max(1, int(num_cpus))
            pool = _RayPool(address, num_cpus, num_gpus, workers, progress)
            if str(device) == "auto" and not num_gpus:
                device = "cpu"
        if study_class is None:
            raise ValueError("run_parallel needs study_class (kdlib.study.Study); run_grid passes it")
        spec = WorkerSpec(root, str(device), data_root, False, threads, study_class, checkpoint_every, group_size,
                          group_mode)
        cancel = True
        try:
            _drive(pool, chunk_runs(list(todo.values()), group_size, wanted), store, spec, records, progress)
            cancel = False
        finally:
            pool.close(cancel)
    return [records[k] for k in keys]


def _drive(pool: Any, chunks: list[list[Any]], store: Store, spec: WorkerSpec, records: dict[str, dict],
           progress: bool) -> None:
    """Submits the missing teachers and score caches first and each chunk of runs once its prerequisites exist;
    collects the runs' records from the store as chunks finish. On any error the tasks not yet finished are
    cancelled."""
    from tqdm.auto import tqdm

    needs: dict[int, set] = {}
    prereqs: dict[tuple, Any] = {}
    for c, chunk in enumerate(chunks):
        needs[c] = set()
        for cfg in chunk:
            for kind, pkey in (("teachers", teacher_key(cfg)), ("scores", score_key(cfg))):
                if pkey is not None and store.done(kind, pkey) is None:
                    needs[c].add((kind, pkey))
                    prereqs.setdefault((kind, pkey), cfg)
    handles: dict[Any, tuple] = {}
    try:
        for (kind, pkey), cfg in prereqs.items():
            handles[pool.submit("teacher" if kind == "teachers" else "scores", cfg, spec)] = ("prereq", (kind, pkey))
        with tqdm(total=sum(map(len, chunks)), desc="grid", disable=not progress) as bar:
            while needs or handles:
                for c in [c for c, n in needs.items() if not n]:
                    del needs[c]
                    handles[pool.submit("runs", chunks[c], spec)] = ("runs", c)
                for handle in pool.wait(list(handles)):
                    what, ident = handles.pop(handle)
                    out = pool.result(handle)  # raises the worker's error
                    if what == "prereq":
                        for n in needs.values():
                            n.discard(ident)
                        continue
                    for cfg in chunks[ident]:
                        key = cfg.key()
                        rec = store.get("runs", key)
                        if rec is None:
                            raise RuntimeError(f"run {key} finished on worker pid {out.get('pid')} but its record is "
                                               f"not in {store.root}; is the store on a filesystem every worker "
                                               f"shares?")
                        records[key] = rec
                        bar.update(1)
    except BaseException:
        pool.cancel(list(handles))
        raise


# --- torchrun: one DDP job over the grid's runs ----------------------------------------------------------------------
def free_port() -> int:
    """A TCP port free on this host right now (for torchrun's --master_port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(config_path: str | os.PathLike, nproc: int, port: Optional[int] = None,
                     results: Optional[str | os.PathLike] = None) -> list[str]:
    """The command that runs a launch file (``kdlib.distributed``) on ``nproc`` local processes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={port or free_port()}", "-m", "kdlib.distributed", "--config", str(config_path)]
    return cmd + (["--results", str(results)] if results else [])


def run_torchrun(configs: Sequence[Any], store: Store | str | os.PathLike, nproc: int, progress: bool = True,
                 device: str = "auto", echo: bool = True) -> list[dict]:
    """The records of ``configs`` (run configs, trained in order by one ``torchrun --nproc_per_node=nproc`` job of
    ``kdlib.distributed`` in a subprocess, its output streamed here when ``echo``). ``nproc`` is runtime, not
    part of any key: the records are those a single process writes."""
    check_positive(nproc, "nproc", integer=True)
    root = Path(store.root if isinstance(store, Store) else store)
    root.mkdir(parents=True, exist_ok=True)
    spec = {"store": str(root), "progress": progress, "device": device, "runs": [canonical(c) for c in configs]}
    with tempfile.TemporaryDirectory(prefix="kdlib-launch-") as tmp:
        cfg_path, res_path = Path(tmp) / "launch.json", Path(tmp) / "results.json"
        cfg_path.write_text(json.dumps(spec))
        cmd = torchrun_command(cfg_path, nproc, results=res_path)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        tail: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            tail = (tail + [line])[-60:]
            if echo:
                print(line, end="", flush=True)
        if proc.wait() != 0 or not res_path.exists():
            raise RuntimeError(f"torchrun exited with status {proc.returncode}: {' '.join(cmd)}\n{''.join(tail)}")
        return json.loads(res_path.read_text())
