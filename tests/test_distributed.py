"""kdlib.distributed: config keys, in-process runs, and 2-process torchrun runs on CPU (gloo)."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from kdlib.distributed import (Batches, Dist, DistConfig, free_port, launch, load_teacher_state, parse_launch,
                               train_distributed)
from kdlib.models import build_model
from kdlib.store import Store, config_key

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {"dataset": "digits", "model": "convnet_small", "workers": 0, "eval_batch_size": 512,
        "train": {"epochs": 1, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "precision": "fp32"}}


def torchrun(config_path, nproc=2, timeout=240):
    """``python -m torch.distributed.run --nproc_per_node=2 --master_port <free> -m kdlib.distributed``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "-m", "kdlib.distributed", "--config", str(config_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown run parameter.*fractoin"):
        DistConfig.from_dict({**TINY, "fractoin": 0.5})
    with pytest.raises(ValueError, match="needs a teacher"):
        DistConfig.from_dict({**TINY, "alpha": 0.5})
    with pytest.raises(ValueError, match="needs data_root"):
        DistConfig(dataset="image_folder")
    with pytest.raises(ValueError, match="unknown dataset"):
        DistConfig(dataset="imagenette")
    with pytest.raises(ValueError, match="workers"):
        DistConfig.from_dict({**TINY, "workers": -1})
    src = Batches.__new__(Batches)
    src.ctx = Dist(rank=0, world=3)
    with pytest.raises(ValueError, match="batch_size 128.*not divisible by the 3 processes"):
        src.per_rank_batch(128)


def test_key_ignores_paths_and_speed_knobs_and_shares_the_teacher():
    base = DistConfig.from_dict(TINY)
    same = DistConfig.from_dict({**TINY, "data_root": "/elsewhere", "workers": 7, "eval_batch_size": 64,
                                 "teacher": "convnet", "tau": 2.0})  # no KD: teacher and tau are irrelevant
    assert config_key(base.identity("digits")) == config_key(same.identity("digits"))
    assert config_key(base.identity("digits")) != config_key(base.identity("image_folder:0123"))
    assert config_key(DistConfig.from_dict({**TINY, "seed": 1}).identity("digits")) != config_key(base.identity("digits"))

    kd = DistConfig.from_dict({**TINY, "fraction": 0.5, "alpha": 0.5, "teacher": "convnet_small"})
    teacher = kd.teacher_config()
    assert teacher.fraction == 1.0 and teacher.alpha == 0.0 and teacher.model == "convnet_small"
    assert config_key(teacher.identity("digits")) == config_key(base.identity("digits"))  # the full no-KD run
    assert DistConfig.from_dict(kd.to_dict()) == kd


def test_in_process_run_writes_one_record_and_is_not_recomputed(tmp_path):
    store = Store(tmp_path / "store")
    cfg = DistConfig.from_dict({**TINY, "fraction": 0.5, "alpha": 0.5, "teacher": "convnet_small"})
    rec = train_distributed(cfg, store, progress=False, device="cpu")
    assert rec["status"] == "done" and rec["world_size"] == 1 and rec["backend"] is None
    assert rec["n_train"] == round(0.5 * 1437) and rec["n_full"] == 1437 and rec["n_test"] == 360
    res = rec["result"]
    for k in ("final_acc", "best_acc", "curve", "wall_seconds", "train_seconds", "images_per_sec", "losses"):
        assert k in res
    assert 0 <= res["final_acc"] <= 100 and res["curve"][-1] == [1, res["final_acc"]]
    assert res["steps"] == 718 // 32 and res["extra"]["per_rank_batch"] == 32
    teacher = store.done("runs", rec["teacher_key"])  # trained once, first, with its weights kept
    assert teacher["config"]["fraction"] == 1.0 and "sha256" in teacher and rec["teacher_acc"] == teacher["result"]["final_acc"]
    assert store.load_state("runs", teacher["key"], teacher["sha256"]) is not None
    assert sorted(p.name for p in (tmp_path / "store" / "runs").glob("*.json")) == sorted(
        [f"{rec['key']}.json", f"{teacher['key']}.json"])

    again = launch([cfg], store.root, nproc=1, progress=False, device="cpu")[0]
    assert again["reused"] and again["written"] == rec["written"]
    assert not list((tmp_path / "store" / "checkpoints").glob("*"))


@pytest.mark.parametrize("train, epochs, steps", [
    ({"min_steps": 50}, 3, 3 * (718 // 32)),              # the floor: 22 steps per epoch, 1 epoch is too few
    ({"budget": "steps"}, 3, 3 * (718 // 32)),            # the full data's 45 steps over a half subset
])
def test_in_process_run_follows_the_recipes_budget(tmp_path, train, epochs, steps):
    cfg = DistConfig.from_dict({**TINY, "fraction": 0.5, "train": {**TINY["train"], **train}})
    res = train_distributed(cfg, Store(tmp_path), progress=False, device="cpu")["result"]
    assert (res["epochs"], res["steps"]) == (epochs, steps)


def test_teacher_checkpoint_in_torchvision_format(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None, num_classes=10)
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    model = build_model("resnet18", 10)
    load_teacher_state(tmp_path / "tv.pt", model)
    assert torch.equal(model.head.weight, tv.fc.weight) and torch.equal(model.body.conv1.weight, tv.conv1.weight)


def test_launch_file_lays_runs_over_shared_fields():
    configs, opts = parse_launch({**TINY, "store": "/s", "progress": False,
                                  "runs": [{"fraction": 0.5}, {"fraction": 1.0, "seed": 2}]})
    assert [(c.fraction, c.seed, c.model) for c in configs] == [(0.5, 0, "convnet_small"), (1.0, 2, "convnet_small")]
    assert opts == {"store": "/s", "progress": False, "device": "auto"}


def test_torchrun_two_processes_on_cpu_write_one_record(tmp_path):
    store = tmp_path / "store"
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**TINY, "fraction": 0.5, "store": str(store), "progress": False,
                                    "device": "cpu"}))
    (line,) = torchrun(path)
    assert line["status"] == "done" and not line["reused"] and line["world_size"] == 2

    files = sorted(p.name for p in (store / "runs").iterdir())
    assert files == [f"{line['key']}.json", f"{line['key']}.lock"]  # one record, no stray temporaries
    rec = Store(store).done("runs", line["key"])
    assert rec["world_size"] == 2 and rec["backend"] == "gloo" and rec["device"] == "cpu"
    assert rec["n_train"] == 718 and rec["config"]["fraction"] == 0.5 and rec["config"]["data_id"] == "digits"
    res = rec["result"]
    assert res["extra"]["per_rank_batch"] == 16 and res["steps"] == 359 // 16  # 718 kept over 2 ranks of 16
    assert 0 <= res["final_acc"] <= 100 and res["images_per_sec"] > 0 and res["wall_seconds"] > 0
    assert len(res["curve"]) == 1 and res["best_acc"] >= res["final_acc"]
    assert not list((store / "checkpoints").glob("*"))

    # A second launch, through launch() (the notebook's torchrun subprocess), reads the record.
    (again,) = launch([DistConfig.from_dict({**TINY, "fraction": 0.5})], store, nproc=2, progress=False,
                      device="cpu", echo=False)
    assert again["reused"] and again["key"] == line["key"] and again["written"] == rec["written"]
    assert Store(store).done("runs", line["key"])["written"] == rec["written"]


@pytest.mark.slow
def test_torchrun_image_folder_with_kd(tmp_path):
    """The streamed folder pipeline under torchrun: teacher (full data) then the KD student on a random half."""
    from kdlib.imagenet import export_image_folder

    root = export_image_folder("digits", tmp_path / "digits_folder", per_class=16, image_size=24, val_per_class=8)
    store = tmp_path / "store"
    spec = {"dataset": "image_folder", "data_root": str(root), "image_size": 16, "crop_scale": [0.35, 1.0],
            "model": "convnet_small", "teacher": "convnet_small", "workers": 1, "eval_batch_size": 64,
            "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "schedule": "cosine"}, "store": str(store),
            "progress": False, "device": "cpu", "runs": [{"fraction": 0.5, "alpha": 0.5}]}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(spec))
    (line,) = torchrun(path)
    rec = Store(store).done("runs", line["key"])
    assert rec["n_train"] == 80 and rec["n_full"] == 160 and rec["n_test"] == 80 and rec["world_size"] == 2
    assert "NOT ImageNet" in rec["data_source"] and rec["config"]["data_id"].startswith("image_folder:")
    teacher = Store(store).done("runs", rec["teacher_key"])
    assert teacher["n_train"] == 160 and "sha256" in teacher
    assert len(list((store / "runs").glob("*.json"))) == 2
