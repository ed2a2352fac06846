"""The paper profile's smoke run: the same code paths on tiny data in the real file formats, kept apart from real
results (``python -m kdlib.notebooks --profile paper --smoke``)."""
from pathlib import Path

import pytest

from kdlib.data import load_dataset
from kdlib.imagenet import load_folder_data
from kdlib.notebooks import NOTEBOOKS, ROOT, load_params, notebook_parameters, run_study
from kdlib.smoke import smoke_params, write_smoke_data

PAPER = [n for n in NOTEBOOKS if (ROOT / "params" / "paper" / f"{n}.yaml").exists()]
KEPT = ("dataset", "model", "teacher", "teachers", "methods", "executor", "tau", "label_noise", "alpha", "rule_kind")


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    return write_smoke_data(tmp_path_factory.mktemp("smoke") / "data")


def smoke(name, tmp=Path("/smoke")):
    params = load_params(ROOT / "params" / "paper" / f"{name}.yaml")
    allowed = notebook_parameters(ROOT / "notebooks" / f"{name}.ipynb")
    return params, smoke_params(name, params, allowed, tmp / "data", tmp / "store", tmp / name)


@pytest.mark.parametrize("name", PAPER)
def test_smoke_keeps_models_methods_and_executors(name):
    params, small = smoke(name)
    assert {k: small[k] for k in KEPT if k in params} == {k: params[k] for k in KEPT if k in params}


@pytest.mark.parametrize("name", [n for n in PAPER if n != "imagenet"
                                  and "train" in load_params(ROOT / "params" / "paper" / f"{n}.yaml")])
def test_smoke_keeps_the_recipe_but_one_epoch(name):
    params, small = smoke(name)
    assert small["train"] == {**params["train"], "epochs": 1}


@pytest.mark.parametrize("name", [n for n in PAPER if "store" in notebook_parameters(ROOT / "notebooks" / f"{n}.ipynb")])
def test_smoke_results_go_to_the_smoke_store(name):
    _, small = smoke(name)
    assert (small["store"], small["out_dir"]) == ("/smoke/store", f"/smoke/{name}")


def test_smoke_imagenet_is_launched_through_torchrun_on_the_smoke_folder():
    _, small = smoke("imagenet")
    assert (small["nproc"], small["data_root"], small["export"]) == (2, "/smoke/data/imagenet", None)


def test_smoke_imagenet_keeps_the_recipe_but_one_epoch_and_a_small_batch():
    params, small = smoke("imagenet")
    assert (small["epochs"], small["train"]) == (1, {**params["train"], "batch_size": 16})


def test_smoke_cifar10_in_its_pickle_format(smoke_data):
    d = load_dataset("cifar10", smoke_data)
    assert (d.n_train, len(d.y_test), d.num_classes, d.classes[0]) == (200, 100, 10, "airplane")


def test_smoke_cifar100_in_its_pickle_format(smoke_data):
    d = load_dataset("cifar100", smoke_data)
    assert (d.n_train, d.num_classes, sorted(set(d.y_train.tolist())) == list(range(100))) == (200, 100, True)


def test_smoke_svhn_in_its_mat_format(smoke_data):
    d = load_dataset("svhn", smoke_data)
    assert (d.n_train, d.num_classes, d.y_train.bincount().tolist()) == (200, 10, [20] * 10)


def test_smoke_imagenet_in_its_folder_layout(smoke_data):
    folder = load_folder_data(smoke_data / "imagenet", 32)
    assert (folder.num_classes, folder.n_train, len(folder.val)) == (10, 260, 50)


@pytest.mark.slow
def test_paper_profile_smoke_runs_every_notebook(tmp_path):
    """Every notebook of the paper profile executes with --smoke; its outputs stay under <profile>-smoke/."""
    done = run_study("paper", outputs=tmp_path, force=True, smoke=True)
    assert done == {name: "ran" for name in PAPER}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper-smoke"]
    assert "SMOKE RUN" in (tmp_path / "paper-smoke" / "SMOKE.txt").read_text()


def test_a_smoke_study_writes_only_under_the_smoke_folder(tmp_path, monkeypatch):
    import kdlib.notebooks as nbs

    seen = {}

    def fake_execute(name, profile, overrides=None, output=None, params_file=None, log_output=False):
        seen[name] = (overrides, output)
        output.write_text("{}")

    monkeypatch.setattr(nbs, "execute", fake_execute)
    run_study("paper", ["pruning_sweep"], outputs=tmp_path, smoke=True)
    overrides, output = seen["pruning_sweep"]
    smoke_dir = tmp_path / "paper-smoke"
    assert (output, overrides["store"], overrides["data_root"]) == \
        (smoke_dir / "pruning_sweep.ipynb", str(smoke_dir / "store"), str(smoke_dir / "data"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paper-smoke"]
