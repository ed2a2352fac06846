"""kdlib.distributed: RunConfigs through Study in a process group (in-process, 1 and 2 torchrun processes on CPU,
gloo), image-folder runs, launch files."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from grid_helpers import one_thread  # noqa: F401  (one_thread: the fixture used below)
from kdlib.distributed import DistConfig, FolderSource, free_port, launch, load_teacher_state, parse_launch
from kdlib.models import build_model
from kdlib.processes import ProcessGroup
from kdlib.store import Store, canonical, config_key
from kdlib.study import RunConfig, Study, TeacherConfig, run_grid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = {"epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "precision": "fp32"}
TINY = {"dataset": "digits", "model": "convnet_small", "train": RECIPE}
KD = {**TINY, "fraction": 0.5, "alpha": 0.5, "teacher": "convnet_small", "teacher_fraction": 0.5}
FOLDER_TINY = {"dataset": "image_folder", "data_root": "/data", "image_size": 16, "model": "convnet_small",
               "workers": 0, "eval_batch_size": 512, "train": RECIPE}


def torchrun(config_path, nproc=2, timeout=400):
    """``python -m torch.distributed.run --nproc_per_node=N --master_port <free> -m kdlib.distributed``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
           f"--master_port={free_port()}", "-m", "kdlib.distributed", "--config", str(config_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def launch_file(tmp_path, store, runs, **top):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump({**top, "store": str(store), "progress": False, "device": "cpu",
                                    "runs": runs}))
    return path


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown run parameter.*fractoin"):
        DistConfig.from_dict({**FOLDER_TINY, "fractoin": 0.5})
    with pytest.raises(ValueError, match="needs a teacher"):
        DistConfig.from_dict({**FOLDER_TINY, "alpha": 0.5})
    with pytest.raises(ValueError, match="needs data_root"):
        DistConfig(dataset="image_folder")
    with pytest.raises(ValueError, match="is a kdlib.study.RunConfig"):
        DistConfig(dataset="digits")
    with pytest.raises(ValueError, match="workers"):
        DistConfig.from_dict({**FOLDER_TINY, "workers": -1})
    src = FolderSource.__new__(FolderSource)
    src.group = ProcessGroup(rank=0, world=3)
    with pytest.raises(ValueError, match="batch_size 128.*not divisible by the 3 processes"):
        src.per_rank_batch(128)


def test_folder_key_ignores_paths_and_speed_knobs_and_shares_the_teacher():
    base = DistConfig.from_dict(FOLDER_TINY)
    same = DistConfig.from_dict({**FOLDER_TINY, "data_root": "/elsewhere", "workers": 7, "eval_batch_size": 64,
                                 "teacher": "convnet", "tau": 2.0})  # no KD: teacher and tau are irrelevant
    assert config_key(base.identity("f:1")) == config_key(same.identity("f:1"))
    assert config_key(base.identity("f:1")) != config_key(base.identity("f:2"))
    kd = DistConfig.from_dict({**FOLDER_TINY, "fraction": 0.5, "alpha": 0.5, "teacher": "convnet_small"})
    assert config_key(kd.teacher_config().identity("f:1")) == config_key(base.identity("f:1"))
    assert DistConfig.from_dict(kd.to_dict()) == kd


def test_launch_file_lays_runs_over_shared_fields():
    configs, opts = parse_launch({**TINY, "store": "/s", "progress": False,
                                  "runs": [{"fraction": 0.5}, {"fraction": 1.0, "seed": 2}, FOLDER_TINY]})
    assert [type(c).__name__ for c in configs] == ["RunConfig", "RunConfig", "DistConfig"]
    assert [(c.fraction, c.seed) for c in configs[:2]] == [(0.5, 0), (1.0, 2)]
    assert opts == {"store": "/s", "progress": False, "device": "auto"}


def test_in_process_launch_is_the_study_run_with_the_study_teacher(tmp_path, monkeypatch, one_thread):
    """launch(nproc=1) runs the RunConfig through Study: same record, the teacher under teachers/ (the one
    TeacherConfig.of names), run by the loop as a BatchNorm-folded inference copy."""
    import kdlib.train as train_module

    seen = []
    init = train_module.Teachers.__init__

    def spy(self, *a, **kw):
        init(self, *a, **kw)
        seen.extend(self.models)

    monkeypatch.setattr(train_module.Teachers, "__init__", spy)
    cfg = RunConfig.from_dict(KD)
    (rec,) = launch([KD], tmp_path / "a", nproc=1, progress=False, device="cpu")
    assert rec["teacher_key"] == config_key(TeacherConfig.of(cfg))
    assert [p.stem for p in (tmp_path / "a" / "teachers").glob("*.json")] == [rec["teacher_key"]]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for t in seen for m in t.modules())
    alone = canonical(Study(tmp_path / "b", device="cpu", progress=False).run(cfg))
    assert (rec["result"]["losses"], rec["result"]["curve"]) == (alone["result"]["losses"], alone["result"]["curve"])


def test_torchrun_one_process_equals_the_in_process_run(tmp_path, one_thread, monkeypatch):
    """run_grid(executor='torchrun', nproc=1): a 1-process gloo DDP job (model wrapped in DDP) of a RunConfig gives
    the record of Study.run in this process: the same teacher (key and weights; its logits too, else the KD losses
    would differ), accuracy and loss curve. Bitwise equality needs equal torch thread counts on both sides."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the torchrun process, like this one (one_thread)
    store = tmp_path / "ddp"
    cfg = RunConfig.from_dict(KD)
    row = run_grid([cfg], store, executor="torchrun", nproc=1, device="cpu", progress=False).iloc[0]
    rec = Store(store).done("runs", row["key"])
    assert rec["world_size"] == 1 and row["key"] == cfg.key()
    alone = Study(tmp_path / "alone", device="cpu", progress=False).run(cfg)
    assert rec["teacher_key"] == alone["teacher_key"]
    assert Store(store).done("teachers", rec["teacher_key"])["sha256"] == \
        Store(tmp_path / "alone").done("teachers", alone["teacher_key"])["sha256"]
    for k in ("final_acc", "losses", "curve"):
        assert rec["result"][k] == canonical(alone["result"][k]), k


def test_torchrun_two_processes_on_cpu_write_one_record(tmp_path):
    store = tmp_path / "store"
    (line,) = torchrun(launch_file(tmp_path, store, [{**KD, "train": {**RECIPE, "epochs": 1}}]))
    assert line["status"] == "done" and line["world_size"] == 2
    rec = Store(store).done("runs", line["key"])
    assert rec["n_train"] == 718 and rec["teacher_key"] == config_key(TeacherConfig.of(RunConfig.from_dict(
        {**KD, "train": {**RECIPE, "epochs": 1}})))
    res = rec["result"]
    assert res["extra"]["per_rank_batch"] == 16 and res["extra"]["world_size"] == 2
    assert 0 <= res["final_acc"] <= 100 and len(res["curve"]) == 1
    assert not [p for p in (store / "checkpoints").rglob("*") if p.is_file() and p.suffix != ".lock"]
    # a second launch, through launch() (a notebook's torchrun subprocess), reads the record
    (again,) = launch([{**KD, "train": {**RECIPE, "epochs": 1}}], store, nproc=2, progress=False, device="cpu",
                      echo=False)
    assert again["key"] == line["key"] and again["written"] == rec["written"]


def test_teacher_checkpoint_in_torchvision_format(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None, num_classes=10)
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    model = build_model("resnet18", 10)
    load_teacher_state(tmp_path / "tv.pt", model)
    assert torch.equal(model.head.weight, tv.fc.weight) and torch.equal(model.body.conv1.weight, tv.conv1.weight)


def test_in_process_image_folder_run_with_kd(tmp_path, one_thread):
    """The streamed folder pipeline in one process: teacher (full data) then the KD student on a random half."""
    from kdlib.imagenet import export_image_folder

    root = export_image_folder("digits", tmp_path / "digits_folder", per_class=8, image_size=16, val_per_class=4)
    spec = {**FOLDER_TINY, "data_root": str(root), "crop_scale": [0.35, 1.0], "teacher": "convnet_small",
            "train": {**RECIPE, "batch_size": 16}, "fraction": 0.5, "alpha": 0.5}
    (rec,) = launch([spec], tmp_path / "store", nproc=1, progress=False, device="cpu")
    assert rec["status"] == "done" and rec["n_train"] == 40 and rec["n_full"] == 80 and rec["n_test"] == 40
    assert "NOT ImageNet" in rec["data_source"] and rec["config"]["data_id"].startswith("image_folder:")
    assert Store(tmp_path / "store").done("runs", rec["teacher_key"])["n_train"] == 80
    assert not [p for p in (tmp_path / "store" / "checkpoints").rglob("*") if p.is_file() and p.suffix != ".lock"]


@pytest.mark.slow
def test_torchrun_image_folder_with_kd(tmp_path):
    """The streamed folder pipeline under torchrun: teacher (full data) then the KD student on a random half."""
    from kdlib.imagenet import export_image_folder

    root = export_image_folder("digits", tmp_path / "digits_folder", per_class=16, image_size=24, val_per_class=8)
    store = tmp_path / "store"
    spec = {"dataset": "image_folder", "data_root": str(root), "image_size": 16, "crop_scale": [0.35, 1.0],
            "model": "convnet_small", "teacher": "convnet_small", "workers": 1, "eval_batch_size": 64,
            "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "schedule": "cosine"}, "fraction": 0.5,
            "alpha": 0.5}
    (line,) = torchrun(launch_file(tmp_path, store, [spec]))
    rec = Store(store).done("runs", line["key"])
    assert rec["n_train"] == 80 and rec["n_full"] == 160 and rec["n_test"] == 80 and rec["world_size"] == 2
    assert "NOT ImageNet" in rec["data_source"] and rec["config"]["data_id"].startswith("image_folder:")
    teacher = Store(store).done("runs", rec["teacher_key"])
    assert teacher["n_train"] == 160 and "sha256" in teacher
