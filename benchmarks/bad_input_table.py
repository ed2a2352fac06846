"""Runs every bad-input case for real and writes the table of the errors they get into README.md.

``python benchmarks/bad_input_table.py [--readme README.md]``. Each case is a function that feeds kdlib one
bad input; the table shows the exception and its exact message (temporary paths shown as ``<tmp>``), or, for
damaged store files, what the store did. tests/test_faults.py runs the same cases and checks each ``expect``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import textwrap
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Case:
    """One bad input: ``what`` (table text), ``code`` (what the user wrote), ``run(tmp)`` raises or returns the
    outcome text; ``expect`` is a regex the message must match; ``raises`` the expected exception type name."""

    what: str
    code: str
    run: Callable[[Path], str | None]
    expect: str
    raises: str = "ValueError"


def _tiny(**kw):
    from kdlib.study import RunConfig
    from kdlib.train import TrainConfig

    base = dict(dataset="digits", model="convnet_small", teacher="convnet_small", teacher_fraction=0.2,
                train=TrainConfig(epochs=1, batch_size=32, lr=0.05, schedule="cosine"))
    return RunConfig(**{**base, **kw})


def _config(**kw) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.study import RunConfig

        RunConfig.from_dict(kw)

    return run


def _missing_folder(tmp: Path) -> None:
    from kdlib.study import RunConfig

    RunConfig.from_dict({"dataset": "image_folder", "data": {"root": str(tmp)}})


def _train(**kw) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.train import TrainConfig

        TrainConfig(**kw)

    return run


def _executor(tmp: Path) -> None:
    from kdlib.study import run_grid

    run_grid([_tiny()], tmp / "store", executor="dask")


def _group_size(tmp: Path) -> None:
    from kdlib.study import run_grid

    run_grid([_tiny()], tmp / "store", progress=False, group_size=0)


def _group_mode(tmp: Path) -> None:
    from kdlib.study import run_grid

    run_grid([_tiny()], tmp / "store", progress=False, group_mode="wide")


def _executor_options(tmp: Path) -> None:
    from kdlib.study import check_executor_options

    check_executor_options({"runs_per_gpus": 2})


def _gpu_workers(tmp: Path) -> None:
    from kdlib.study import run_grid

    run_grid([_tiny()], tmp / "store", executor="processes", devices=["cuda:0", "cuda:1"], workers=8)


def _grid_axis(tmp: Path) -> None:
    from kdlib.study import expand_grid

    expand_grid({}, {"fractions": [0.1]})


def _seeds_by_method(tmp: Path) -> None:
    from kdlib.study import sweep_grid

    sweep_grid({}, ["random", "el2n"], {"fraction": [0.1]}, [0, 1, 2], {"radnom": list(range(10))})


def _seeds_by_teacher(tmp: Path) -> None:
    from kdlib.plan import study_grid, study_params

    study_grid("teacher_capacity", {**study_params("teacher_capacity", "quick"), "teachers": ["resnet8", "resnet14"],
                                    "seeds_by_teacher": {"resnet32": [0, 1]}})


def _missing_cifar(tmp: Path) -> None:
    from kdlib.data import load_dataset

    (tmp / "empty").mkdir()
    load_dataset("cifar10", root=tmp / "empty")


def _params_file(text: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.notebooks import load_params

        path = tmp / "params.yaml"
        path.write_text(text)
        load_params(path)

    return run


def _unknown_notebook_parameter(tmp: Path) -> None:
    from kdlib.notebooks import execute

    path = tmp / "params.yaml"
    path.write_text("fractoins: [0.1, 0.5]\n")
    execute("pruning_sweep", "quick", params_file=path, output=tmp / "out.ipynb")


def _tiny_kd_store(tmp: Path):
    """A store under ``tmp`` holding one finished tiny KD run (one torch thread): (store, config, teacher key)."""
    import torch

    from kdlib.store import Store, config_key
    from kdlib.study import Study, TeacherConfig

    torch.set_num_threads(1)
    store = Store(tmp / "store")
    cfg = _tiny(fraction=0.1, alpha=0.5)
    Study(store, progress=False).run(cfg)
    return store, cfg, config_key(TeacherConfig.of(cfg))


def _damaged(kind: str) -> Callable[[Path], str]:
    """Runs a tiny KD config, damages one store file, runs it again; returns what the store did."""

    def run(tmp: Path) -> str:
        from kdlib.study import Study

        store, cfg, tkey = _tiny_kd_store(tmp)
        if kind == "record":
            path = store.path("runs", cfg.key())
            path.write_text(path.read_text()[:200])
        elif kind == "tampered":
            path = store.path("runs", cfg.key())
            rec = json.loads(path.read_text())
            rec["result"]["final_acc"] = 99.0
            path.write_text(json.dumps(rec, indent=1))
        else:
            path = store.path("teachers", tkey, ".pt")
            raw = bytearray(path.read_bytes())
            raw[len(raw) // 2] ^= 0xFF
            path.write_bytes(bytes(raw))
            store.path("runs", cfg.key()).unlink()
        rec = Study(store, progress=False).run(cfg)
        (bad,) = path.parent.glob(path.name + ".*.corrupt")
        why = bad.with_name(bad.name + ".why").read_text()
        redone = "teacher retrained, run recomputed" if kind == "checkpoint" else "run recomputed"
        return (f"no exception: moved to `{bad.parent.name}/{re.sub(r'[.][0-9]+[.][0-9]+[.]', '.<ms>.<pid>.', bad.name)}`"
                f" with `.why` = `{why}`; {redone} (status {rec['status']})")

    return run


def _diverging(tmp: Path) -> str:
    import torch

    from kdlib.study import run_grid
    from kdlib.train import TrainConfig

    torch.set_num_threads(1)
    bad = _tiny(fraction=0.5, train=TrainConfig(epochs=1, batch_size=32, lr=1e6, schedule="constant"))
    df = run_grid([bad, _tiny(fraction=0.1)], tmp / "store", progress=False)
    return (f"no exception: the run's record and row get status `{df.status[0]}`, error `{df.error[0]}`; "
            f"the rest of the grid runs (status `{df.status[1]}`)")


def _yaml_run(text: str) -> Callable[[Path], None]:
    """A run's parameters as written in a YAML file (PyYAML reads ``5e-4`` as a string)."""

    def run(tmp: Path) -> None:
        import yaml

        from kdlib.study import RunConfig

        RunConfig.from_dict(yaml.safe_load(text))

    return run


def _keys(a: dict, b: dict) -> Callable[[Path], str]:
    def run(tmp: Path) -> str:
        from kdlib.study import RunConfig

        ka, kb = RunConfig.from_dict(a).key(), RunConfig.from_dict(b).key()
        return f"no exception: {'one key' if ka == kb else 'two keys'} (`{ka}`), one record, one table row"

    return run


def _normalised(**kw) -> Callable[[Path], str]:
    def run(tmp: Path) -> str:
        from kdlib.train import TrainConfig

        cfg = TrainConfig(**kw)
        return "no exception: normalised to " + ", ".join(f"`{k}={getattr(cfg, k)!r}`" for k in kw)

    return run


def _numpy_seed(tmp: Path) -> str:
    import numpy as np

    from kdlib.study import expand_grid

    cfgs = expand_grid({}, {"seed": np.arange(2)})
    return f"no exception: seeds {[c.seed for c in cfgs]} (Python ints), the same keys as seeds [0, 1]"


def _forged(kind: str) -> Callable[[Path], str]:
    """Writes a real record, forges it the way ``kind`` says and reads it back; returns what the store did."""

    def run(tmp: Path) -> str:
        from kdlib.store import Store, _record_checksum, config_key

        store = Store(tmp / "store")
        mine, other = config_key({"run": 1}), config_key({"run": 2})
        store.put("runs", mine, {"status": "done", "config": {"run": 1}, "result": {"final_acc": 50.0}})
        rec = json.loads(store.path("runs", mine).read_text())
        rec.pop("checksum")
        key = mine
        if kind == "no checksum":
            rec["result"]["final_acc"] = 99.9
        elif kind == "copied":
            rec["key"] = key = other
        elif kind == "copied, checksum recomputed":
            rec["key"] = key = other
            rec["checksum"] = _record_checksum(rec)
        else:  # a record written by kdlib before store format 2
            rec.pop("ident")
            rec["format"] = 1
            rec["checksum"] = _record_checksum(rec)
        store.path("runs", key).write_text(json.dumps(rec, indent=1))
        got = store.get("runs", key)
        (bad,) = store.root.glob("runs/*.corrupt")
        why = bad.with_name(bad.name + ".why").read_text()
        return f"no exception: `get` returns {got}, the file is moved aside with `.why` = `{why}`; recomputed"

    return run


def _failing_run(kind: str) -> Callable[[Path], str]:
    """A grid of a failing run and a good one; returns what the grid recorded."""

    def run(tmp: Path) -> str:
        import torch

        from kdlib.prune import METHODS, PruningMethod
        from kdlib.store import Store
        from kdlib.study import run_grid

        torch.set_num_threads(1)
        if kind == "fraction":
            bad = _tiny(fraction=0.0005)
        else:
            def scorer(ctx):
                raise RuntimeError("scorer exploded")

            METHODS._items["table_broken"] = PruningMethod("table_broken", METHODS.get("el2n").select, "hardest", scorer)
            bad = _tiny(method="table_broken", fraction=0.2)
        try:
            df = run_grid([bad, _tiny(fraction=0.1)], tmp / "store", progress=False)
            tb = Store(tmp / "store").get("runs", bad.key()).get("traceback", "")
        finally:
            METHODS._items.pop("table_broken", None)
        return (f"no exception: the run's record and row get status `{df.status[0]}`, error `{df.error[0]}`"
                f"{', traceback `' + tb.split(' <- ')[0] + ' <- ...`' if tb else ''}; the rest of the grid runs "
                f"(status `{df.status[1]}`)")

    return run


def _grid(axes: dict) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.study import expand_grid

        expand_grid({}, axes)

    return run


def _huge_grid(tmp: Path) -> str:
    import warnings

    from kdlib.study import expand_grid

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        n = len(expand_grid({}, {"fraction": [0.1, 0.2, 0.3, 0.4, 0.5], "seed": range(2500)}))
    return f"no exception: {n} configs, with a UserWarning: {caught[0].message}"


def _store_is_file(tmp: Path) -> None:
    from kdlib.study import run_grid

    (tmp / "store").write_text("")
    run_grid([_tiny()], tmp / "store")


def _grid_preflight(kind: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.study import run_grid

        if kind == "data":
            (tmp / "empty").mkdir()
            run_grid([_tiny(), _tiny(dataset="svhn")], tmp / "store", data_root=str(tmp / "empty"), progress=False)
        else:
            run_grid([_tiny()], tmp / "store", device="cuda:99", progress=False)

    return run


def _symlinked_lock(tmp: Path) -> None:
    from kdlib.store import Store

    store = Store(tmp / "store")
    (tmp / "store" / "runs").mkdir()
    store.path("runs", "k", ".lock").symlink_to(tmp / "outside")
    with store.lock("runs", "k"):
        pass


def _file_modes(tmp: Path) -> str:
    import os

    import torch

    from kdlib.store import Store, config_key

    old = os.umask(0o022)
    try:
        store = Store(tmp / "store")
        key = config_key({"run": 1})
        store.put("runs", key, {"status": "done", "config": {"run": 1}})
        store.save_state("teachers", key, {"w": torch.zeros(1)})
    finally:
        os.umask(old)
    modes = sorted({oct(p.stat().st_mode & 0o777) for p in store.root.rglob("*") if p.is_file()})
    return f"no exception: records and checkpoints are created with mode {', '.join(modes)} (0666 less the umask)"


# --- issue 25: per-user caches, archives, stores, SLURM and CUDA input ---------------------------------------------
@contextmanager
def _scratch_cache(tmp: Path) -> Iterator[Path]:
    """The per-user cache in ``tmp/cache`` while the case runs (never the real one)."""
    import os

    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
    try:
        yield tmp / "cache" / "kdlib"
    finally:
        if old is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old


def _warned(fn: Callable[[], object]) -> tuple[object, list[str]]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = fn()
    return value, [str(w.message) for w in caught]


def _folder_spec(kind: str) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.imagenet import folder_fingerprint
        from kdlib.smoke import write_imagenet_layout
        from kdlib.study import RunConfig

        with _scratch_cache(tmp):
            a = write_imagenet_layout(tmp / "a", seed=0)
            b = write_imagenet_layout(tmp / "b", seed=1)
            given = folder_fingerprint(a) if kind == "other" else "0123456789abcdef"
            RunConfig.from_dict({"dataset": "image_folder", "data": {"root": str(b), "fingerprint": given}})

    return run


def _rewrite_in_place(path: Path) -> None:
    import os

    st = path.stat()
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    with open(path, "r+b") as fh:
        fh.write(bytes(raw))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _folder_cache(kind: str) -> Callable[[Path], str]:
    def run(tmp: Path) -> str:
        import hashlib

        from kdlib.imagenet import folder_fingerprint
        from kdlib.smoke import write_imagenet_layout

        with _scratch_cache(tmp) as cache:
            root = write_imagenet_layout(tmp / "imagenet")
            before = folder_fingerprint(root)
            if kind == "rewritten":
                _rewrite_in_place(next((root / "train").glob("*/*.JPEG")))
                after = folder_fingerprint(root)
                return f"no exception: {'a new fingerprint (the file is read again)' if after != before else 'the old fingerprint'}"
            if kind == "copy":
                import shutil

                copy = shutil.copytree(root, tmp / "copy" / "imagenet")
                _rewrite_in_place(next((copy / "train").glob("*/*.JPEG")))
                same = folder_fingerprint(copy) == before
                return f"no exception: {'the original' if same else 'its own'} fingerprint (the copy is read in full)"
            (path,) = (cache / "folder_fingerprints").glob("*.json")
            entry = json.loads(path.read_text())
            for row in entry["files"]:
                row[2] = "../../etc"
            body = {k: v for k, v in entry.items() if k != "checksum"}
            entry["checksum"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
            path.write_text(json.dumps(entry))
            got, warned = _warned(lambda: folder_fingerprint(root))
            text = re.sub(r"folder_fingerprints/[0-9a-f]+[.]json", "folder_fingerprints/<root hash>.json", warned[0])
            return (f"no exception: {'the folder' if got == before else 'another'}'s own fingerprint, with a "
                    f"UserWarning: {text}")

    return run


def _digits_cache(kind: str) -> Callable[[Path], str]:
    def run(tmp: Path) -> str:
        import numpy as np

        from kdlib.data import _digits_split, _split_digest

        with _scratch_cache(tmp) as cache:
            _, _, train, test = _digits_split()
            (path,) = cache.glob("digits-split-*.npz")
            if kind == "overlap":
                with np.load(path) as z:
                    arrays = {k: z[k] for k in z.files}
                arrays["train"] = np.union1d(arrays["train"], arrays["test"][:40])
                arrays["digest"] = _split_digest(arrays["x"], arrays["y"], arrays["train"], arrays["test"],
                                                 str(arrays["source"]))
                np.savez(path, **arrays)
            else:
                path.write_bytes(b"")
            (_, _, train2, test2), warned = _warned(_digits_split)
            text = re.sub(r"sklearn-[0-9.]+[.]npz", "sklearn-<version>.npz", warned[0])
            return (f"no exception: the split recomputed ({len(train2)} train / {len(test2)} test rows), with a "
                    f"UserWarning: {text}")

    return run


def _archive_line(kind: str) -> Callable[[Path], str]:
    """An archive of two run records, one of them altered the way ``kind`` says, imported into a new store."""

    def run(tmp: Path) -> str:
        import gzip

        from kdlib.archive import export_records, import_records
        from kdlib.store import Store, _record_checksum, config_key

        src = Store(tmp / "src")
        for seed in (0, 1):
            cfg = {"run": seed}
            src.put("runs", config_key(cfg), {"status": "done", "config": cfg})
        path = tmp / "a.jsonl.gz"
        export_records(src, path, ["runs"])
        items = [json.loads(line) for line in gzip.decompress(path.read_bytes()).decode().splitlines()]
        if kind == "dotdot":
            items[0]["kind"] = ".."
        else:
            rec = {k: v for k, v in items[0]["record"].items() if k != "checksum"}
            rec["key"] = "abc\x00def" if kind == "nul" else "a" * 300
            rec["checksum"] = _record_checksum(rec)
            items[0]["record"] = rec
        path.write_bytes(gzip.compress(("\n".join(json.dumps(i) for i in items) + "\n").encode()))
        counts, warned = _warned(lambda: import_records(path, tmp / "store"))
        outside = sorted(p.name for p in tmp.iterdir() if p.suffix == ".json")
        return (f"no exception: {counts}, with a UserWarning: {warned[0]}; "
                f"{'nothing written outside the store' if not outside else 'written outside: ' + ', '.join(outside)}")

    return run


def _archive_file(kind: str) -> Callable[[Path], str | None]:
    def run(tmp: Path) -> str | None:
        import gzip

        from kdlib.archive import export_records, import_records
        from kdlib.store import Store, config_key

        src = Store(tmp / "src")
        cfg = {"run": 0}
        src.put("runs", config_key(cfg), {"status": "done", "config": cfg})
        path = tmp / "a.jsonl.gz"
        export_records(src, path, ["runs"])
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:-12])
            import_records(path, tmp / "store")
        elif kind == "long line":
            path.write_bytes(gzip.compress(b"x" * 10_000_000))  # 10 MB in one line, ~10 KB compressed
            import_records(path, tmp / "store", max_line_bytes=2**20)
        else:  # the store holds a failed run, the archive the finished one
            dst = Store(tmp / "store")
            dst.put("runs", config_key(cfg), {"status": "failed", "config": cfg, "error": "killed"})
            counts = import_records(path, dst)
            return f"no exception: {counts}; the record is now `{dst.get('runs', config_key(cfg))['status']}`"
        return None

    return run


def _unloadable_teacher(tmp: Path) -> str:
    """A tiny KD run; its teacher's weights replaced by a pickle that needs code, the record's SHA-256 updated."""
    import argparse
    import io

    import torch

    from kdlib.study import Study

    store, cfg, tkey = _tiny_kd_store(tmp)
    buf = io.BytesIO()
    torch.save({"w": argparse.Namespace(x=1)}, buf)
    rec = store.get("teachers", tkey)
    fields = {k: v for k, v in rec.items() if k not in ("key", "format", "written", "ident")}
    store.put("teachers", tkey, {**fields, "sha256": store.put_blob("teachers", tkey, buf.getvalue(), ".pt")},
              ident=rec["ident"])
    store.path("runs", cfg.key()).unlink()
    done = Study(store, progress=False).run(cfg)
    (bad,) = store.path("teachers", tkey, ".pt").parent.glob("*.corrupt")
    why = bad.with_name(bad.name + ".why").read_text()
    return (f"no exception: moved to `teachers/<key>.pt.<ms>.<pid>.corrupt` with `.why` = `{why[:80]}...`; teacher "
            f"retrained, run recomputed (status {done['status']})")


def _read_only_store(tmp: Path) -> str:
    """A store on a read-only filesystem (simulated: every rename fails with EROFS) holding a damaged record."""
    import errno
    import pathlib

    from kdlib.store import Store, config_key

    store = Store(tmp / "store")
    keys = []
    for seed in (0, 1):
        cfg = {"run": seed}
        keys.append(config_key(cfg))
        store.put("runs", keys[-1], {"status": "done", "config": cfg})
    store.path("runs", keys[1]).write_text("{ half")
    real = pathlib.Path.replace

    def replace(self, target):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    pathlib.Path.replace = replace
    try:
        records, warned = _warned(lambda: store.records("runs"))
    finally:
        pathlib.Path.replace = real
    text = warned[0].replace(keys[1], "<key>")
    return f"no exception: {len(records)} of 2 records read, with a UserWarning: {text}"


def _odd_file(kind: str) -> Callable[[Path], str]:
    def run(tmp: Path) -> str:
        import os

        from kdlib.store import Store, config_key

        store = Store(tmp / "store")
        cfg = {"run": 0}
        store.put("runs", config_key(cfg), {"status": "done", "config": cfg})
        path = store.root / "runs" / "odd.json"
        {"fifo": lambda: os.mkfifo(path), "dir": path.mkdir, "loop": lambda: path.symlink_to(path)}[kind]()
        records, warned = _warned(lambda: store.records("runs"))
        return f"no exception (no hang): {len(records)} good record read, with a UserWarning: {warned[0]}"

    return run


def _orphans(tmp: Path) -> str:
    import os
    import time

    from kdlib.store import Store

    (tmp / "store" / "runs").mkdir(parents=True)
    old, fresh = tmp / "store" / "runs" / ".a.json.x1.tmp", tmp / "store" / "runs" / ".b.json.x2.tmp"
    for p in (old, fresh):
        p.write_text("partial")
    os.utime(old, (time.time() - 2 * 86400,) * 2)
    Store(tmp / "store")
    return (f"no exception: opening the store removes the 2-day-old one ({'gone' if not old.exists() else 'kept'}) "
            f"and keeps the fresh one ({'kept' if fresh.exists() else 'gone'})")


def _slurm(**options) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.slurm import SlurmOptions

        SlurmOptions.from_dict(options)

    return run


def _slurm_array(tmp: Path) -> str:
    from kdlib.slurm import SlurmOptions, sbatch_script

    line = next(ln for ln in sbatch_script({}, array_size=2500).splitlines() if "--array" in ln)
    return (f"no exception: `{line}`; the 2500 jobs go out as {len(SlurmOptions().array_chunks(2500))} arrays of at "
            f"most slurm.max_array_size=1000")


def _cuda_auto(capability: tuple[int, int]) -> Callable[[Path], str]:
    """precision='auto' on a GPU of ``capability`` (forced: torch.cuda answers as on that GPU, bf16 emulated)."""

    def run(tmp: Path) -> str:
        import torch

        from kdlib import precision as P

        saved = torch.version.hip, torch.cuda.get_device_capability, torch.cuda.is_bf16_supported
        torch.version.hip = None
        torch.cuda.get_device_capability = lambda device=None: capability
        torch.cuda.is_bf16_supported = lambda including_emulation=True: including_emulation or capability[0] >= 8
        try:
            chosen = P.resolve_precision("auto", "cuda")
            scaler = P.needs_loss_scaler("auto", "cuda")
        finally:
            torch.version.hip, torch.cuda.get_device_capability, torch.cuda.is_bf16_supported = saved
        return f"no exception: `{chosen}`{' with the loss scaler' if scaler else ''}"

    return run

CASES = [
    Case("unknown dataset", 'RunConfig(dataset="mnist")', _config(dataset="mnist"), r"unknown dataset 'mnist'; allowed values for 'dataset': .*digits"),
    Case("unknown model", 'RunConfig(model="vgg16")', _config(model="vgg16"), r"unknown model 'vgg16'; allowed values for 'model': .*resnet32"),
    Case("unknown teacher model", 'RunConfig(teacher="vgg16", alpha=0.5)', _config(teacher="vgg16", alpha=0.5), r"unknown teacher 'vgg16'; allowed values for 'teacher': "),
    Case("unknown pruning method", 'RunConfig(method="magic")', _config(method="magic"), r"unknown method 'magic'; allowed values for 'method': .*random"),
    Case("unknown KD loss", 'RunConfig(kd_loss="mse2")', _config(kd_loss="mse2"), r"unknown kd_loss 'mse2'; allowed values for 'kd_loss': .*kd"),
    Case("unknown schedule", 'TrainConfig(schedule="linear")', _train(schedule="linear"), r"unknown schedule 'linear'; allowed values for 'schedule': step, cosine"),
    Case("unknown precision", 'TrainConfig(precision="fp8")', _train(precision="fp8"), r"unknown precision 'fp8'"),
    Case("unknown executor", 'run_grid(configs, store, executor="dask")', _executor, r"unknown executor 'dask'; allowed values for 'executor': local, processes, ray"),
    Case("unknown executor option", 'pruning_sweep params: executor_options: {runs_per_gpus: 2}', _executor_options,
         r"unknown executor_options \['runs_per_gpus'\]; allowed: workers, address"),
    Case("group size 0", 'run_grid(configs, store, group_size=0)', _group_size,
         r"group_size must be a positive integer \(runs trained as one group; 1: one at a time\) or 'auto'"),
    Case("unknown group mode", 'run_grid(configs, store, group_mode="wide")', _group_mode,
         r"unknown group_mode 'wide'; allowed values for 'group_mode': auto, stacked, loop"),
    Case("more workers than GPU slots", 'run_grid(configs, store, executor="processes", devices=["cuda:0", "cuda:1"], workers=8)',
         _gpu_workers, r"workers=8 is more than 2 GPU\(s\) x runs_per_gpu=1; raise runs_per_gpu"),
    Case("unknown grid axis", 'expand_grid({}, {"fractions": [0.1]})', _grid_axis, r"unknown grid axis \['fractions'\]; allowed: "),
    Case("seeds for a method not in the sweep", 'pruning_sweep: methods: [random, el2n], seeds_by_method: {radnom: [...]}',
         _seeds_by_method, r"seeds_by_method names \['radnom'\], which are not in methods; allowed: random, el2n"),
    Case("seeds for a teacher not in the study", 'teacher_capacity: teachers: [resnet8, resnet14], seeds_by_teacher: {resnet32: [0, 1]}',
         _seeds_by_teacher, r"seeds_by_teacher names \['resnet32'\], which are not in teachers; allowed: resnet8, resnet14"),
    Case("unknown run parameter", 'RunConfig.from_dict({"fractoin": 0.5})', _config(fractoin=0.5), r"unknown run parameter\(s\) \['fractoin'\]; allowed: "),
    Case("unknown train parameter", 'RunConfig.from_dict({"train": {"epoch": 3}})', _config(train={"epoch": 3}), r"unknown train parameter\(s\) \['epoch'\]; allowed: "),
    Case("unknown method hyperparameter", 'RunConfig(method="ccs", fraction=0.5, method_params={"stratas": 5})', _config(method="ccs", fraction=0.5, method_params={"stratas": 5}), r"method_params \['stratas'\] are not hyperparameters of method 'ccs'; allowed: cal_neighbours, strata"),
    Case("hyperparameter of a method without any", 'RunConfig(method="random", fraction=0.5, method_params={"strata": 5})', _config(method="random", fraction=0.5, method_params={"strata": 5}), r"method_params \['strata'\] are not hyperparameters of method 'random'; allowed: none"),
    Case("method hyperparameter not whole", 'RunConfig(method="ccs", fraction=0.5, method_params={"strata": 2.5})', _config(method="ccs", fraction=0.5, method_params={"strata": 2.5}), r"method_params.strata of method 'ccs' must be a finite integer like its default 50, got 2.5"),
    Case("method_params not a mapping", 'RunConfig(method="ccs", fraction=0.5, method_params=50)', _config(method="ccs", fraction=0.5, method_params=50), r"method_params must be a mapping of hyperparameter names to values, got 50"),
    Case("unknown KD-loss hyperparameter", 'RunConfig(kd_loss="kd", alpha=0.5, teacher=..., kd_params={"beta": 1.0})', _config(kd_loss="kd", alpha=0.5, teacher="convnet_small", kd_params={"beta": 1.0}), r"kd_params \['beta'\] are not hyperparameters of kd_loss 'kd'; allowed: none"),
    Case("KD-loss hyperparameter a word", 'RunConfig(kd_loss="dkd", alpha=0.5, teacher=..., kd_params={"beta": "high"})', _config(kd_loss="dkd", alpha=0.5, teacher="convnet_small", kd_params={"beta": "high"}), r"kd_params.beta of kd_loss 'dkd' must be a finite number like its default 8.0, got 'high'"),
    Case("image folder without its folder", 'RunConfig(dataset="image_folder")', _config(dataset="image_folder"), r"data \(a FolderSpec: root, image_size, crop_scale, ...\) is set exactly when dataset='image_folder'"),
    Case("scored method on streamed data", 'RunConfig(dataset="image_folder", data=..., method="el2n", fraction=0.5)', _config(dataset="image_folder", data={"root": "/data/imagenet", "fingerprint": "0123456789abcdef"}, method="el2n", fraction=0.5), r"method must be 'random' for dataset='image_folder' \(streamed data: a scorer needs the whole dataset in memory\), got 'el2n'"),
    Case("image folder that is not there", 'RunConfig(dataset="image_folder", data={"root": <empty folder>})', _missing_folder, r"no ImageNet-layout folder \(train/<class>/\*, val/<class>/\*\) found; looked in:", "FileNotFoundError"),
    Case("teacher checkpoint that is not there", 'RunConfig(alpha=0.5, teacher=..., teacher_checkpoint="missing.pt")', _config(alpha=0.5, teacher="convnet_small", teacher_checkpoint="missing.pt"), r"teacher_checkpoint: no file at 'missing.pt'"),
    Case("fraction 0", "RunConfig(fraction=0)", _config(fraction=0), r"fraction must lie in \(0, 1\] \(the fraction of data kept\), got 0"),
    Case("fraction above 1", "RunConfig(fraction=1.5)", _config(fraction=1.5), r"fraction must lie in \(0, 1\]"),
    Case("fraction not a number", 'RunConfig(fraction="half")', _config(fraction="half"), r"fraction must be a number in \(0, 1\] \(the fraction of data kept\), got 'half'"),
    Case("alpha above 1", "RunConfig(alpha=1.2, teacher=...)", _config(alpha=1.2, teacher="convnet_small"), r"alpha must lie in \[0, 1\], got 1.2"),
    Case("alpha negative", "RunConfig(alpha=-0.1)", _config(alpha=-0.1), r"alpha must lie in \[0, 1\], got -0.1"),
    Case("alpha a bad word", 'RunConfig(alpha="high")', _config(alpha="high"), r"alpha must be a number in \[0, 1\] or 'auto'"),
    Case("KD without a teacher", "RunConfig(alpha=0.5)", _config(alpha=0.5), r"alpha=0.5 > 0 needs a teacher; set teacher to one of: "),
    Case("teacher_fraction 0", "RunConfig(teacher_fraction=0)", _config(teacher_fraction=0), r"teacher_fraction must lie in \(0, 1\]"),
    Case("teacher_fraction above 1", "RunConfig(teacher_fraction=2)", _config(teacher_fraction=2), r"teacher_fraction must lie in \(0, 1\]"),
    Case("label_noise 1", "RunConfig(label_noise=1.0)", _config(label_noise=1.0), r"label_noise must lie in \[0, 1\), got 1.0"),
    Case("tau 0", "RunConfig(tau=0)", _config(tau=0), r"tau must be a positive number, got 0"),
    Case("epochs 0", "TrainConfig(epochs=0)", _train(epochs=0), r"epochs must be a positive integer, got 0"),
    Case("negative learning rate", "TrainConfig(lr=-0.1)", _train(lr=-0.1), r"lr must be a positive number, got -0.1"),
    Case("milestone outside the run", "TrainConfig(milestones=(0.5, 1.5))", _train(milestones=(0.5, 1.5)), r"milestones must be fractions of the run in \(0, 1\)"),
    Case("missing data", 'load_dataset("cifar10", root=<empty folder>)', _missing_cifar, r"dataset 'cifar10' not found; looked in:", "FileNotFoundError"),
    Case("parameter file not YAML", "params.yaml: a: [1, 2", _params_file("a: [1, 2\n"), r"parameter file .* is not valid YAML"),
    Case("parameter file not a mapping", "params.yaml: - a list", _params_file("- just\n- a list\n"), r"parameter file .* must hold a mapping of parameter names to values, got list"),
    Case("unknown notebook parameter", "params.yaml for pruning_sweep: fractoins: [0.1, 0.5]", _unknown_notebook_parameter, r"unknown parameter\(s\) \['fractoins'\] for notebook 'pruning_sweep'; allowed: "),
    Case("half-written run record", "runs/<key>.json cut after 200 bytes", _damaged("record"), r"unreadable record: .*; run recomputed \(status done\)", "-"),
    Case("run record edited in place", "runs/<key>.json with final_acc changed", _damaged("tampered"), r"unreadable record: record checksum mismatch`; run recomputed", "-"),
    Case("corrupt teacher checkpoint", "teachers/<key>.pt with one byte flipped", _damaged("checkpoint"), r"`checksum mismatch`; teacher retrained", "-"),
    Case("diverging run", "TrainConfig(lr=1e6) in one run of a grid", _diverging, r"status `failed`, error `.*loss became nan in epoch 1 \(lr=1000000.0\); stopping`", "-"),
    # issue 12, case 2: flags that silently flipped
    Case("flag given as a word", 'RunConfig(class_balanced="no")', _config(class_balanced="no"), r"class_balanced must be true or false \(a boolean\), got 'no' \(a string: write true or false without quotes\)"),
    Case("train flag given as a word", 'RunConfig.from_dict({"train": {"augment": "false"}})', _config(train={"augment": "false"}), r"train: augment must be true or false \(a boolean\), got 'false'"),
    Case("flag given as a number", "TrainConfig(channels_last=1)", _train(channels_last=1), r"channels_last must be true or false \(a boolean\), got 1"),
    Case("nesterov given as a word", 'TrainConfig(nesterov="yes")', _train(nesterov="yes"), r"nesterov must be true or false"),
    # case 3: records that do not prove themselves
    Case("record edited, checksum deleted", "runs/<key>.json: final_acc 99.9, no checksum", _forged("no checksum"), r"`get` returns None, .*`unreadable record: record has no checksum`; recomputed", "-"),
    Case("record copied under another key", "runs/<other>.json: a copy, key rewritten, no checksum", _forged("copied"), r"`get` returns None, .*`unreadable record: record has no checksum`; recomputed", "-"),
    Case("record copied, checksum recomputed", "runs/<other>.json: a copy, key rewritten, checksum recomputed", _forged("copied, checksum recomputed"), r"`get` returns None, .*`unreadable record: record identity hashes to [0-9a-f]{16}, not to its key`; recomputed", "-"),
    Case("record of an older kdlib", "runs/<key>.json written by store format 1", _forged("old"), r"`get` returns None, .*`unreadable record: record written by store format 1, not 2 .*`; recomputed", "-"),
    # case 4: one experiment, one key
    Case("int where a float is meant", "RunConfig(label_noise=0) and RunConfig(label_noise=0.0)", _keys({"label_noise": 0}, {"label_noise": 0.0}), r"no exception: one key", "-"),
    Case("tau as an int", "RunConfig(tau=4, ...) and RunConfig(tau=4.0, ...)", _keys({"tau": 4, "alpha": 0.5, "teacher": "convnet_small"}, {"tau": 4.0, "alpha": 0.5, "teacher": "convnet_small"}), r"no exception: one key", "-"),
    Case("numpy seeds", 'expand_grid({}, {"seed": np.arange(2)})', _numpy_seed, r"no exception: seeds \[0, 1\]", "-"),
    # case 5: values that passed validation and then aborted the grid
    Case("integral floats", "TrainConfig(epochs=2.0, batch_size=64.0)", _normalised(epochs=2.0, batch_size=64.0), r"normalised to `epochs=2`, `batch_size=64`", "-"),
    Case("epochs not whole", "TrainConfig(epochs=2.5)", _train(epochs=2.5), r"epochs must be a positive integer, got 2.5"),
    Case("YAML exponent without a point", "params.yaml: train: {weight_decay: 5e-4}", _yaml_run("train: {weight_decay: 5e-4}\n"), r"train: weight_decay must be a number >= 0, got the string '5e-4' \(YAML reads 5e-4 as a string: an exponent needs a decimal point, write 5.0e-4\)"),
    Case("negative momentum", "TrainConfig(momentum=-5)", _train(momentum=-5), r"momentum must be a number >= 0, got -5"),
    Case("nesterov without momentum", "TrainConfig(nesterov=True, momentum=0)", _train(nesterov=True, momentum=0), r"nesterov=True needs momentum > 0"),
    Case("label_noise as a string", 'RunConfig(label_noise="0.1")', _config(label_noise="0.1"), r"label_noise must be a number in \[0, 1\), got the string '0.1' \(a string: write the number without quotes\)"),
    Case("negative seed", "RunConfig(seed=-1)", _config(seed=-1), r"seed must lie in \[0, 4294967295\], got -1"),
    Case("fraction too small for the data", "RunConfig(fraction=0.0005) in a grid (digits)", _failing_run("fraction"), r"status `failed`, error `ValueError: fraction=0.0005 keeps round\(0.0005 \* \d+\) = 1 of the \d+ training samples; training needs at least 2: use fraction >= .*`; the rest of the grid runs \(status `done`\)", "-"),
    Case("any error inside a run", "a scorer that raises in one run of a grid", _failing_run("error"), r"status `failed`, error `RuntimeError: scorer exploded`, traceback `bad_input_table.py:\d+ in scorer <- .*`; the rest of the grid runs \(status `done`\)", "-"),
    # case 6: NaN and infinity
    Case("NaN learning rate", 'TrainConfig(lr=float("nan"))', _train(lr=float("nan")), r"lr must be a positive number and finite, got nan"),
    Case("infinite tau", 'RunConfig(tau=float("inf"))', _config(tau=float("inf")), r"tau must be a positive number and finite, got inf"),
    Case("NaN gamma", 'TrainConfig(gamma=float("nan"))', _train(gamma=float("nan")), r"gamma must be a positive number and finite, got nan"),
    # case 7: grids and stores
    Case("empty grid axis", 'expand_grid({}, {"fraction": []})', _grid({"fraction": []}), r"grid axis 'fraction' is empty: give at least one value"),
    Case("grid axis given as a string", 'params.yaml: fractions: "0.1" -> expand_grid({}, {"fraction": "0.1"})', _grid({"fraction": "0.1"}), r"grid axis 'fraction' must be a list of values, got '0.1'; write \[0.1\] for a single value"),
    Case("huge grid", "expand_grid over 5 fractions x 2500 seeds", _huge_grid, r"no exception: 12500 configs, with a UserWarning: expand_grid builds 12500 configs \(5 fraction x 2500 seed\)", "-"),
    Case("store path that is a file", "run_grid(configs, <a file>)", _store_is_file, r"store '<tmp>/store' is a file, not a folder"),
    Case("missing data in a grid", "run_grid([digits run, svhn run], store, data_root=<empty folder>)", _grid_preflight("data"), r"dataset 'svhn' not found; looked in:", "FileNotFoundError"),
    Case("device the machine lacks", 'run_grid(configs, store, device="cuda:99")', _grid_preflight("device"), r"device='cuda:99' but this machine has (no CUDA device|\d+ CUDA device)"),
    Case("symlinked lock file", "runs/<key>.lock -> a file outside the store", _symlinked_lock, r"lock file .* is a symbolic link \(to <tmp>/outside\); a store's lock files must be plain files", "RuntimeError"),
    Case("store shared by a group", "umask 022", _file_modes, r"no exception: records and checkpoints are created with mode 0o644", "-"),
    # issue 25: per-user caches, image folders, archives, stores, SLURM and CUDA
    Case("image folder spec with another folder's fingerprint", 'RunConfig(dataset="image_folder", data={"root": B, "fingerprint": <A\'s>})', _folder_spec("other"), r"data: fingerprint '[0-9a-f]{16}' does not match the folder <tmp>/b, whose content fingerprint is '[0-9a-f]{16}'"),
    Case("image folder spec with a made-up fingerprint", 'RunConfig(dataset="image_folder", data={"root": B, "fingerprint": "0123456789abcdef"})', _folder_spec("made up"), r"data: fingerprint '0123456789abcdef' does not match the folder <tmp>/b"),
    Case("image rewritten, size and mtime kept", "one JPEG's last byte flipped in place, its mtime set back", _folder_cache("rewritten"), r"no exception: a new fingerprint \(the file is read again\)", "-"),
    Case("edited copy of a fingerprinted folder", "shutil.copytree(A, C), one JPEG of C rewritten, size and mtime kept", _folder_cache("copy"), r"no exception: its own fingerprint", "-"),
    Case("poisoned fingerprint cache", "~/.cache/kdlib/folder_fingerprints/<root>.json: digests '../../etc', checksum recomputed", _folder_cache("poisoned"), r"no exception: the folder's own fingerprint, with a UserWarning: ignoring the per-user cache file <tmp>/cache/kdlib/folder_fingerprints/<root hash>.json: its entry for .* is not \(path, stat, SHA-256\)", "-"),
    Case("digits cache with test rows in train", "~/.cache/kdlib/digits-split-*.npz: 40 test rows added to train, digest recomputed", _digits_cache("overlap"), r"no exception: the split recomputed \(1437 train / 360 test rows\), with a UserWarning: ignoring the per-user cache file .*: its train and test rows are not a sorted partition", "-"),
    Case("empty digits cache file", "~/.cache/kdlib/digits-split-*.npz: 0 bytes", _digits_cache("empty"), r"no exception: the split recomputed \(1437 train / 360 test rows\), with a UserWarning: ignoring the per-user cache file <tmp>/cache/kdlib/digits-split-sklearn-<version>.npz: unreadable \(EOFError", "-"),
    Case("archive line with kind '..'", 'archive line {"kind": "..", "record": <a valid run record>}', _archive_line("dotdot"), r"no exception: \{'added': 1, 'present': 0, 'refused': 1\}, with a UserWarning: .*line 1 refused: kind '..' is not one of runs, alpha_rules, teachers, scores; nothing written outside the store", "-"),
    Case("archive key with a NUL byte", 'archive line whose record key is "abc\\0def" (checksum recomputed)', _archive_line("nul"), r"no exception: \{'added': 1, 'present': 0, 'refused': 1\}, with a UserWarning: .*line 1 refused: key 'abc\\x00def' of a 'runs' record does not match \[0-9a-f\]\{16\}", "-"),
    Case("archive key of 300 characters", "archive line whose record key is 300 'a's (checksum recomputed)", _archive_line("long"), r"no exception: \{'added': 1, 'present': 0, 'refused': 1\}, with a UserWarning: .*line 1 refused: key 'a{32}'... \(300 characters\) of a 'runs' record does not match \[0-9a-f\]\{16\}; nothing written outside the store", "-"),
    Case("truncated archive", "python -m kdlib.archive import <archive less its last 12 bytes> STORE", _archive_file("truncated"), r"archive <tmp>/a.jsonl.gz is truncated or not a gzip file \(EOFError: .*\)"),
    Case("archive with one huge line", "a 10 KB gzip holding one 10 MB line, max_line_bytes=1 MiB", _archive_file("long line"), r"archive <tmp>/a.jsonl.gz: line 1 is longer than max_line_bytes=1048576 \(--max-line-mb\); raise the limit if the archive is trusted"),
    Case("archive with a finished run the store has failed", "import_records(<archive: run done>, <store: same run failed>)", _archive_file("replace"), r"no exception: \{'added': 1, 'present': 0, 'refused': 0\}; the record is now `done`", "-"),
    Case("teacher weights that verify but need code", "teachers/<key>.pt: a pickle of argparse.Namespace, its SHA-256 in the record", _unloadable_teacher, r"moved to `teachers/<key>.pt.<ms>.<pid>.corrupt` with `.why` = `unloadable artefact: UnpicklingError: Weights only load failed.*; teacher retrained, run recomputed \(status done\)", "-"),
    Case("damaged record in a read-only store", "store.records() on a read-only filesystem (EROFS simulated), runs/<key>.json cut", _read_only_store, r"no exception: 1 of 2 records read, with a UserWarning: <tmp>/store/runs/<key>.json: unreadable record: .*; skipped, left in place \(the store cannot be written: Read-only file system\)", "-"),
    Case("FIFO in runs/", "os.mkfifo(runs/odd.json)", _odd_file("fifo"), r"no exception \(no hang\): 1 good record read, with a UserWarning: <tmp>/store/runs/odd.json is a FIFO, socket or device, not a regular file: skipped", "-"),
    Case("directory in runs/", "runs/odd.json/ a directory", _odd_file("dir"), r"no exception \(no hang\): 1 good record read, with a UserWarning: <tmp>/store/runs/odd.json is a directory, not a regular file: skipped", "-"),
    Case("symlink loop in runs/", "runs/odd.json -> runs/odd.json", _odd_file("loop"), r"no exception \(no hang\): 1 good record read, with a UserWarning: <tmp>/store/runs/odd.json is a symbolic link, not a regular file: skipped", "-"),
    Case("orphaned temporary files", "runs/.a.json.x1.tmp two days old, runs/.b.json.x2.tmp fresh", _orphans, r"no exception: opening the store removes the 2-day-old one \(gone\) and keeps the fresh one \(kept\)", "-"),
    Case("newline in a SLURM option", 'slurm={"name": "kd\\nsrun touch /tmp/owned"}', _slurm(name="kd\nsrun touch /tmp/owned"), r"slurm.name must not contain control characters \(a newline would end its #SBATCH line and run the rest as a shell command\)"),
    Case("newline in a SLURM partition", 'slurm={"partition": "gpu\\nrm -rf ~"}', _slurm(partition="gpu\nrm -rf ~"), r"slurm.partition must not contain control characters"),
    Case("additional overriding kdlib's --time", 'slurm={"additional": {"time": 9999}}', _slurm(additional={"time": 9999}), r"slurm.additional\['time'\]: --time is kdlib's own sbatch setting and cannot be overridden"),
    Case("additional overriding kdlib's --array", 'slurm={"additional": {"array": "0-1"}}', _slurm(additional={"array": "0-1"}), r"slurm.additional\['array'\]: --array is kdlib's own sbatch setting"),
    Case("additional value None", 'slurm={"additional": {"gres": None}}', _slurm(additional={"gres": None}), r"slurm.additional\['gres'\] must be a string, an integer, a number or true \(a flag without value\); leave the option out instead of None"),
    Case("additional flag False", 'slurm={"additional": {"exclusive": False}}', _slurm(additional={"exclusive": False}), r"slurm.additional\['exclusive'\] must be a string, an integer, a number or true"),
    Case("mem_gb below 1", 'slurm={"mem_gb": 0.0005}', _slurm(mem_gb=0.0005), r"slurm.mem_gb must be a number >= 1 \(GB; below 1 SLURM may read --mem=0 as the node's whole memory\), got 0.0005"),
    Case("array over MaxArraySize", "sbatch_script({}, array_size=2500)", _slurm_array, r"no exception: `#SBATCH --array=0-999%256`; the 2500 jobs go out as 3 arrays of at most slurm.max_array_size=1000", "-"),
    Case("precision auto on a V100", 'TrainConfig(precision="auto") on compute capability 7.0 (forced; bf16 only emulated)', _cuda_auto((7, 0)), r"no exception: `fp16` with the loss scaler", "-"),
    Case("precision auto on a T4", 'TrainConfig(precision="auto") on compute capability 7.5 (forced; bf16 only emulated)', _cuda_auto((7, 5)), r"no exception: `fp16` with the loss scaler", "-"),
    Case("precision auto on an A100", 'TrainConfig(precision="auto") on compute capability 8.0 (forced)', _cuda_auto((8, 0)), r"no exception: `bf16`$", "-"),
]


def outcome(case: Case) -> tuple[str, str]:
    """(exception type or '-', message or outcome) of running ``case`` for real, temporary paths as <tmp>."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            text, kind = case.run(Path(tmp)) or "(no error)", "-"
        except Exception as err:  # noqa: BLE001 - the point is to show what the user gets
            text, kind = str(err), type(err).__name__
        return kind, text.replace(str(Path(tmp).resolve()), "<tmp>").replace(tmp, "<tmp>")


def table(cases=CASES) -> str:
    rows = ["| bad input | what was written | exception | message or outcome |", "| --- | --- | --- | --- |"]
    for case in cases:
        kind, text = outcome(case)
        text = text.replace("|", "\\|").replace("\n", "<br>")
        rows.append(f"| {case.what} | `{case.code}` | {kind} | {text} |")
    return "\n".join(rows)


START, END = "<!-- bad-input:start -->", "<!-- bad-input:end -->"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help="file whose marked section is rewritten")
    args = parser.parse_args(argv)
    intro = textwrap.dedent("""\
        Generated by `python benchmarks/bad_input_table.py`, which runs every case for real (tests/test_faults.py
        checks each message); {n} cases. Bad parameters fail at once, when the config is built, with a ValueError
        naming the parameter and its allowed values or range; values that mean the same experiment (`4` and `4.0`,
        numpy scalars) are normalised to one key. Damaged, edited or unverifiable store files are not errors: they
        are moved aside (`*.corrupt`, with a `.why` file) and recomputed, never silently read (a per-user
        cache file or an archive line that does not verify is ignored with a warning naming it). A run that fails
        (its loss becomes NaN or infinite, or any other error inside it) is recorded as failed with its message, and
        the grid goes on; what would fail every run (a missing dataset, a store that is a file or unwritable, a
        device the machine lacks) stops the grid before anything trains.

        """).format(n=len(CASES))
    path = Path(args.readme)
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path} lacks the markers {START} ... {END}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{intro}{table()}\n{END}{tail}")
    print(f"rewrote the bad-input table in {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
