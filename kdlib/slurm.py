"""The ``slurm`` grid executor: each teacher, score cache and run is a SLURM job, submitted through ``submitit``.

    run_grid(configs, "/shared/store", executor="slurm",
             slurm={"partition": "gpu", "account": "mylab", "time": 240, "gpus": 1, "cpus": 8, "mem_gb": 32,
                    "array_parallelism": 64, "setup": ["source /shared/kdlib/.venv/bin/activate"]})

The driver (``run_grid``, on a login node) submits in waves, each wave one job array: first every teacher and
score cache the grid lacks (with the runs that need neither), then each run once what it needs is in the store
(``kdlib.executors._drive``: the order of the other executors). Every job opens the same store, so the store,
the log folder and the Python environment must be on a filesystem every node mounts at the same path.

Preemption and time limits: submitit sends the job USR2 ``signal_delay_s`` seconds before SLURM kills it; the job
(a ``submitit.helpers.Checkpointable``) then requeues itself with the same arguments, and the requeued job resumes
the run from its last in-run checkpoint in the store (``Study.run``; saved every ``checkpoint_every`` seconds), so
a preempted 240-epoch run repeats at most that much. ``max_requeue`` bounds the requeues of one job.

``cluster: local`` runs the same jobs as local processes (submitit's local executor): what the tests use.
"""
from __future__ import annotations

import math
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from submitit.helpers import Checkpointable

from .validate import check_choice, check_number, from_plain, normalise, optional

CLUSTERS = ("slurm", "local")


MAX_ARRAY_SIZE = 1000  # jobs per array: SLURM's MaxArraySize is 1001 by default (indices 0-1000)
# the sbatch options kdlib (through submitit) writes itself: ``additional`` may not set them, nor abbreviate them
# (sbatch reads an unambiguous prefix of a long option as that option)
OWN_SBATCH_OPTIONS = ("account", "array", "constraint", "cpus-per-task", "error", "gpus-per-node", "job-name",
                      "mem", "nodes", "ntasks-per-node", "open-mode", "output", "partition", "qos", "signal",
                      "time", "wckey")
_NOT_ABBREVIATIONS = frozenset({"gpus"})  # sbatch options of their own that are prefixes of the ones above
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str, parameter: str) -> str:
    if _CONTROL.search(value):
        raise ValueError(f"{parameter} must not contain control characters (a newline would end its #SBATCH line "
                         f"and run the rest as a shell command), got {value!r}")
    return value


def _text(value: Any, parameter: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{parameter} must be a non-empty string, got {value!r}")
    return _no_control(value, parameter)


def _lines(value: Any, parameter: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{parameter} must be a list of shell lines, got {value!r}")
    return tuple(_no_control(v, f"{parameter}[{i}]") for i, v in enumerate(value))


def _sbatch_options(value: Any, parameter: str) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{parameter} must be a mapping of sbatch option names to values "
                         f"(e.g. {{'exclusive': True, 'gres': 'gpu:a100:1'}}), got {value!r}")
    out = {}
    for name, v in value.items():
        where = f"{parameter}[{name!r}]"
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", name):
            raise ValueError(f"{parameter}: {name!r} is not an sbatch option name (letters, digits, - and _)")
        option = name.replace("_", "-")
        own = next((o for o in OWN_SBATCH_OPTIONS if o == option
                    or (o.startswith(option) and option not in _NOT_ABBREVIATIONS)), None)
        if own is not None:
            raise ValueError(f"{where}: --{own} is kdlib's own sbatch setting and cannot be overridden "
                             f"(set it through the slurm option that writes it: time, partition, account, qos, "
                             f"constraint, gpus, cpus, mem_gb, array_parallelism, name, folder, signal_delay_s); "
                             f"not allowed in additional: {', '.join(OWN_SBATCH_OPTIONS)} or their abbreviations")
        if v is True or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"{where} must be finite, got {v!r}")
            out[name] = v
        elif isinstance(v, str) and v.strip():
            out[name] = _no_control(v, where)
        else:
            raise ValueError(f"{where} must be a string, an integer, a number or true (a flag without value); "
                             f"leave the option out instead of {v!r}")
    return out


@dataclass(frozen=True)
class SlurmOptions:
    """What each job asks SLURM for, and how the driver submits: the ``slurm`` mapping of ``run_grid``.

    ``partition``, ``account``, ``qos``, ``constraint``: sbatch's options of those names (None: the cluster's
    default). ``time``: minutes per job (``--time``; a teacher trains on the whole training set, so it is the
    longest job). ``gpus``: GPUs per job (``--gpus-per-node``; 0 runs on the CPU). ``cpus``: CPUs per job
    (``--cpus-per-task``; also the job's torch threads). ``mem_gb``: memory per job (``--mem``; None: the
    default). ``array_parallelism``: at most this many jobs of one array run at once (``--array=0-N%P``).
    ``setup``: shell lines run before the job (``module load ...``, activating the environment). ``additional``:
    any other sbatch option, ``{name: value}``. ``signal_delay_s``: seconds between the USR2 that asks a job to
    requeue and SLURM's kill. ``max_requeue``: requeues per job (time limits and preemptions). ``checkpoint_every``:
    the least seconds between two in-run checkpoints (what a requeued run repeats at most). ``folder``: where
    submitit writes job scripts, pickles and logs (default ``<store>/slurm/``; a folder every node sees).
    ``name``: the job name. ``cluster``: ``slurm``, or ``local`` to run the jobs as local processes (tests).
    ``max_array_size``: at most this many jobs per array (SLURM's ``MaxArraySize`` less one; a larger wave goes
    out as several arrays). Text options refuse control characters (a newline would end its ``#SBATCH`` line);
    ``additional`` may not set, or abbreviate, an option kdlib writes itself (``OWN_SBATCH_OPTIONS``), and its
    values are strings, numbers or true; ``mem_gb`` is at least 1.
    """

    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    time: int = 60
    gpus: int = 0
    cpus: int = 1
    mem_gb: Optional[float] = None
    array_parallelism: int = 256
    setup: tuple[str, ...] = ()
    additional: Mapping[str, Any] = field(default_factory=dict)
    signal_delay_s: int = 120
    max_requeue: int = 3
    checkpoint_every: float = 60.0
    folder: Optional[str] = None
    name: str = "kdlib"
    cluster: str = "slurm"
    max_array_size: int = MAX_ARRAY_SIZE

    def __post_init__(self) -> None:
        def key(check: Any, **kw: Any) -> Any:
            return lambda v, n: check(v, f"slurm.{n}", **kw)

        normalise(self, {
            "partition": optional(key(_text)), "account": optional(key(_text)), "qos": optional(key(_text)),
            "constraint": optional(key(_text)),
            "time": key(check_number, integer=True, low=1, note=" (minutes)"),
            "gpus": key(check_number, integer=True, low=0),
            "cpus": key(check_number, integer=True, low=1),
            "mem_gb": optional(key(check_number, low=1, note=" (GB; below 1 SLURM may read --mem=0 as the "
                                                              "node's whole memory)")),
            "array_parallelism": key(check_number, integer=True, low=1),
            "setup": key(_lines), "additional": key(_sbatch_options),
            "signal_delay_s": key(check_number, integer=True, low=0),
            "max_requeue": key(check_number, integer=True, low=0),
            "checkpoint_every": key(check_number, low=0),
            "folder": optional(key(_text)), "name": key(_text),
            "cluster": lambda v, n: check_choice(v, f"slurm.{n}", CLUSTERS),
            "max_array_size": key(check_number, integer=True, low=1, note=" (the cluster's MaxArraySize - 1)"),
        })

    def array_chunks(self, n: int) -> list[range]:
        """The job arrays ``n`` jobs go out as: consecutive ranges of at most ``max_array_size`` jobs."""
        return [range(i, min(i + self.max_array_size, n)) for i in range(0, n, self.max_array_size)]

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "SlurmOptions":
        """From the ``slurm`` mapping of ``run_grid`` (or a YAML file), naming any unknown key and the allowed
        ones."""
        return from_plain(cls, d or {}, {}, what="slurm setting(s)")

    def executor_parameters(self) -> dict[str, Any]:
        """The ``submitit.AutoExecutor.update_parameters`` arguments (generic ones and ``slurm_``-prefixed)."""
        p: dict[str, Any] = {"name": self.name, "timeout_min": self.time, "gpus_per_node": self.gpus,
                             "cpus_per_task": self.cpus, "tasks_per_node": 1, "nodes": 1,
                             "slurm_array_parallelism": self.array_parallelism,
                             "slurm_signal_delay_s": self.signal_delay_s}
        if self.mem_gb is not None:
            p["mem_gb"] = self.mem_gb
        for name in ("partition", "account", "qos", "constraint"):
            if getattr(self, name) is not None:
                p[f"slurm_{name}"] = getattr(self, name)
        if self.setup:
            p["slurm_setup"] = list(self.setup)
            p["local_setup"] = list(self.setup)
        if self.additional:
            p["slurm_additional_parameters"] = dict(self.additional)
        return p


def sbatch_script(options: SlurmOptions | Mapping[str, Any], folder: str = "/shared/store/slurm/%j",
                  array_size: int = 2) -> str:
    """The sbatch script submitit writes for one job array of ``array_size`` jobs under ``options`` (what a user
    checks before submitting a grid; built by submitit's own template). Above ``max_array_size`` it is the script
    of the first of the arrays the jobs go out as."""
    from submitit.slurm import slurm as submitit_slurm

    opts = options if isinstance(options, SlurmOptions) else SlurmOptions.from_dict(options)
    array_size = len(opts.array_chunks(check_number(array_size, "array_size", integer=True, low=1))[0])
    renamed = submitit_slurm.SlurmExecutor._equivalence_dict()
    args = {renamed.get(k, k.removeprefix("slurm_")): v for k, v in opts.executor_parameters().items()
            if not k.startswith("local_")}
    if "mem" in args:
        args["mem"] = submitit_slurm._convert_mem(args["mem"])
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(folder)}"
    return submitit_slurm._make_sbatch_string(command=command, folder=folder, map_count=array_size, **args)


class SlurmWork(Checkpointable):
    """One job: ``fn(task, cfg, spec)`` (``kdlib.executors.work``). On USR2 (time limit or preemption) submitit
    calls ``checkpoint``, which resubmits the same call: the requeued job resumes its run from the store."""

    def __init__(self, fn: Callable[..., dict]) -> None:
        self.fn = fn

    def __call__(self, task: str, cfg: Any, spec: Any) -> dict:
        return self.fn(task, cfg, spec)


@dataclass(eq=False)
class _Handle:
    """A submission: queued until the next ``wait`` sends the wave as one job array, then its job."""

    task: str
    cfg: Any
    spec: Any
    job: Any = None


class SlurmPool:
    """The pool face (submit / wait / result / cancel / close) that ``kdlib.executors._drive`` schedules on:
    what is submitted between two waits goes out as one job array (``executor.map_array``)."""

    def __init__(self, options: SlurmOptions, store_root: Path, fn: Callable[..., dict]) -> None:
        """Jobs that run ``fn(task, cfg, spec)`` (``kdlib.executors.work``) with ``options``' requests; their
        scripts and logs go to ``options.folder`` or ``<store_root>/slurm/<job id>/``."""
        import submitit

        if options.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError("executor='slurm' needs SLURM's sbatch on PATH (run the grid on a login node); "
                             "slurm={'cluster': 'local'} runs the same jobs as local processes")
        folder = options.folder or str(Path(store_root) / "slurm" / "%j")
        self.executor = submitit.AutoExecutor(folder=folder, cluster=options.cluster,
                                              slurm_max_num_timeout=options.max_requeue,
                                              local_max_num_timeout=options.max_requeue)
        self.executor.update_parameters(**options.executor_parameters())
        self.fn = fn
        self.options = options
        self.poll_s = 1.0 if options.cluster == "local" else 15.0
        self.pending: list[_Handle] = []

    def submit(self, task: str, cfg: Any, spec: Any) -> _Handle:
        handle = _Handle(task, cfg, spec)
        self.pending.append(handle)
        return handle

    def _flush(self) -> None:
        if not self.pending:
            return
        wave, self.pending = self.pending, []
        for chunk in self.options.array_chunks(len(wave)):  # arrays of at most slurm.max_array_size jobs
            part = [wave[i] for i in chunk]
            jobs = self.executor.map_array(SlurmWork(self.fn), [h.task for h in part], [h.cfg for h in part],
                                           [h.spec for h in part])
            for handle, job in zip(part, jobs):
                handle.job = job

    def wait(self, handles: list) -> list:
        self._flush()
        while True:
            done = [h for h in handles if h.job.done()]
            if done:
                return done
            time.sleep(self.poll_s)

    def result(self, handle: _Handle) -> dict:
        try:
            return handle.job.result()
        except Exception as err:  # noqa: BLE001 - submitit wraps the job's error (or its death) in its own
            raise RuntimeError(f"SLURM job {handle.job.job_id} ({handle.task}) ended without a result (killed, out "
                               f"of memory, or requeued more than slurm.max_requeue times); its log: "
                               f"{handle.job.paths.stderr}; finished records are kept, run the grid again to "
                               f"resume") from err

    def cancel(self, handles: list) -> None:
        self.pending = []
        for h in handles:
            if h.job is not None and not h.job.done():
                h.job.cancel(check=False)

    def close(self, cancel: bool) -> None:
        self.pending = []


def job_device(device: str, options: SlurmOptions) -> str:
    """The device a job's Study opens: ``auto`` means the GPU SLURM gives the job when it asks for one, else
    the CPU (a job never uses a GPU it did not ask for); a CUDA device without ``gpus`` is a ValueError."""
    if str(device) == "auto":
        return "auto" if options.gpus else "cpu"
    if str(device).startswith("cuda") and not options.gpus:
        raise ValueError(f"device={device!r} but slurm.gpus=0: ask for GPUs with slurm={{'gpus': 1}}")
    return str(device)


