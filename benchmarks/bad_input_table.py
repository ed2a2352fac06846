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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def _train(**kw) -> Callable[[Path], None]:
    def run(tmp: Path) -> None:
        from kdlib.train import TrainConfig

        TrainConfig(**kw)

    return run


def _executor(tmp: Path) -> None:
    from kdlib.study import run_grid

    run_grid([_tiny()], tmp / "store", executor="dask")


def _grid_axis(tmp: Path) -> None:
    from kdlib.study import expand_grid

    expand_grid({}, {"fractions": [0.1]})


def _seeds_by_method(tmp: Path) -> None:
    from kdlib.study import sweep_grid

    sweep_grid({}, ["random", "el2n"], {"fraction": [0.1]}, [0, 1, 2], {"radnom": list(range(10))})


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


def _damaged(kind: str) -> Callable[[Path], str]:
    """Runs a tiny KD config, damages one store file, runs it again; returns what the store did."""

    def run(tmp: Path) -> str:
        import torch

        from kdlib.store import Store, config_key
        from kdlib.study import Study, TeacherConfig

        torch.set_num_threads(1)
        store = Store(tmp / "store")
        cfg = _tiny(fraction=0.1, alpha=0.5)
        Study(store, progress=False).run(cfg)
        tkey = config_key(TeacherConfig.of(cfg))
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


CASES = [
    Case("unknown dataset", 'RunConfig(dataset="mnist")', _config(dataset="mnist"), r"unknown dataset 'mnist'; allowed values for 'dataset': .*digits"),
    Case("unknown model", 'RunConfig(model="vgg16")', _config(model="vgg16"), r"unknown model 'vgg16'; allowed values for 'model': .*resnet32"),
    Case("unknown teacher model", 'RunConfig(teacher="vgg16", alpha=0.5)', _config(teacher="vgg16", alpha=0.5), r"unknown model 'vgg16'"),
    Case("unknown pruning method", 'RunConfig(method="magic")', _config(method="magic"), r"unknown method 'magic'; allowed values for 'method': .*random"),
    Case("unknown KD loss", 'RunConfig(kd_loss="mse2")', _config(kd_loss="mse2"), r"unknown kd_loss 'mse2'; allowed values for 'kd_loss': .*kd"),
    Case("unknown schedule", 'TrainConfig(schedule="linear")', _train(schedule="linear"), r"unknown schedule 'linear'; allowed values for 'schedule': step, cosine"),
    Case("unknown precision", 'TrainConfig(precision="fp8")', _train(precision="fp8"), r"unknown precision 'fp8'"),
    Case("unknown executor", 'run_grid(configs, store, executor="dask")', _executor, r"unknown executor 'dask'; allowed values for 'executor': local, processes, ray"),
    Case("unknown grid axis", 'expand_grid({}, {"fractions": [0.1]})', _grid_axis, r"unknown grid axis \['fractions'\]; allowed: "),
    Case("seeds for a method not in the sweep", 'pruning_sweep: methods: [random, el2n], seeds_by_method: {radnom: [...]}',
         _seeds_by_method, r"seeds_by_method names \['radnom'\], which are not in methods; allowed: random, el2n"),
    Case("unknown run parameter", 'RunConfig.from_dict({"fractoin": 0.5})', _config(fractoin=0.5), r"unknown run parameter\(s\) \['fractoin'\]; allowed: "),
    Case("unknown train parameter", 'RunConfig.from_dict({"train": {"epoch": 3}})', _config(train={"epoch": 3}), r"unknown train parameter\(s\) \['epoch'\]; allowed: "),
    Case("fraction 0", "RunConfig(fraction=0)", _config(fraction=0), r"fraction must lie in \(0, 1\] \(the fraction of data kept\), got 0"),
    Case("fraction above 1", "RunConfig(fraction=1.5)", _config(fraction=1.5), r"fraction must lie in \(0, 1\]"),
    Case("fraction not a number", 'RunConfig(fraction="half")', _config(fraction="half"), r"fraction must be a number in \(0, 1\], got 'half'"),
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
        checks each message). Bad parameters fail at once, before anything trains, with a ValueError naming the
        parameter and its allowed values or range. Damaged store files are not errors: they are moved aside
        (`*.corrupt`, with a `.why` file) and recomputed, never silently read. A run whose loss becomes NaN or
        infinite is recorded as failed with the message below, and the grid goes on.

        """)
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
