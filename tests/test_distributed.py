"""Image-folder runs are RunConfigs (dataset='image_folder', data=FolderSpec) through Study and run_grid;
kdlib.distributed launches torchrun around RunConfigs (in-process, 1 and 2 torchrun processes on CPU, gloo)."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from grid_helpers import one_thread  # noqa: F401  (one_thread: the fixture used below)
from kdlib.distributed import free_port, launch, parse_launch
from kdlib.imagenet import FolderSource
from kdlib.models import build_model
from kdlib.processes import ProcessGroup
from kdlib.store import Store, canonical
from kdlib.study import RunConfig, Study, TeacherConfig, current, run_grid
from kdlib.weights import WeightsFile, load_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = {"epochs": 2, "batch_size": 32, "lr": 0.05, "schedule": "cosine", "precision": "fp32"}
TINY = {"dataset": "digits", "model": "convnet_small", "train": RECIPE}
KD = {**TINY, "fraction": 0.5, "alpha": 0.5, "teacher": "convnet_small", "teacher_fraction": 0.5}
FOLDER_RECIPE = {**RECIPE, "batch_size": 16}


def folder_run(root, **kw):
    """A run on the image folder at ``root`` (16px crops, no DataLoader workers)."""
    data = {"root": str(root), "image_size": 16, "crop_scale": [0.35, 1.0], "workers": 0, "eval_batch_size": 512}
    return RunConfig.from_dict({"dataset": "image_folder", "data": data, "model": "convnet_small",
                                "train": FOLDER_RECIPE, **kw})


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


# --- configs and keys --------------------------------------------------------------------------------------------
def test_streamed_data_allow_only_the_random_method(digits_folder):
    with pytest.raises(ValueError, match="method must be 'random' for dataset='image_folder'.*got 'el2n'"):
        folder_run(digits_folder, method="el2n", fraction=0.5)


def test_an_image_folder_run_needs_its_folder():
    with pytest.raises(ValueError, match="data .* is set exactly when dataset='image_folder'"):
        RunConfig(dataset="image_folder")


def test_an_image_folder_run_takes_no_label_noise(digits_folder):
    with pytest.raises(ValueError, match="label_noise must be 0 for dataset='image_folder'"):
        folder_run(digits_folder, label_noise=0.1)


def test_the_total_batch_must_split_over_the_processes(digits_folder):
    from kdlib.imagenet import load_folder_data

    src = FolderSource(load_folder_data(digits_folder, 16), ProcessGroup(rank=0, world=3))
    with pytest.raises(ValueError, match="batch_size 128.*not divisible by the 3 processes"):
        src.per_rank_batch(128)


def test_a_moved_folder_keeps_the_key_and_loader_knobs_are_not_keyed(digits_folder, tmp_path):
    moved = shutil.copytree(digits_folder, tmp_path / "elsewhere")
    base = folder_run(digits_folder)
    other = RunConfig.from_dict({**canonical(base), "data": {"root": str(moved), "image_size": 16,
                                                             "crop_scale": [0.35, 1.0], "workers": 3,
                                                             "eval_batch_size": 7}})
    assert other.key() == base.key()


def test_changing_one_image_changes_the_key(digits_folder, tmp_path):
    copy = shutil.copytree(digits_folder, tmp_path / "copy")
    before = folder_run(copy).key()
    image = next((copy / "train").rglob("*.JPEG"))
    Image.fromarray(255 - np.asarray(Image.open(image))).save(image, "JPEG")  # same name, same size in pixels
    assert folder_run(copy, data={"root": str(copy), "image_size": 16, "crop_scale": [0.35, 1.0]}).key() != before


def test_the_crop_is_keyed(digits_folder):
    assert folder_run(digits_folder).key() != folder_run(digits_folder, data={"root": str(digits_folder),
                                                                               "image_size": 12,
                                                                               "crop_scale": [0.35, 1.0]}).key()


def test_a_record_is_current_after_its_folder_moved(digits_folder, tmp_path):
    """A record's config holds the fingerprint it was keyed by: reading it back needs no folder."""
    copy = shutil.copytree(digits_folder, tmp_path / "copy")
    cfg = folder_run(copy)
    record = {"key": cfg.key(), "config": canonical(cfg.resolved())}
    shutil.rmtree(copy)
    assert current(record)


def test_launch_file_lays_runs_over_shared_fields():
    configs, opts = parse_launch({**TINY, "store": "/s", "progress": False,
                                  "runs": [{"fraction": 0.5}, {"fraction": 1.0, "seed": 2}]})
    assert [(c.fraction, c.seed) for c in configs] == [(0.5, 0), (1.0, 2)]
    assert opts == {"store": "/s", "progress": False, "device": "auto"}


# --- in-memory data through torchrun ------------------------------------------------------------------------------
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
    assert rec["teacher_key"] == TeacherConfig.of(cfg).key()
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
    assert rec["n_train"] == 718 and rec["teacher_key"] == TeacherConfig.of(RunConfig.from_dict(
        {**KD, "train": {**RECIPE, "epochs": 1}})).key()
    res = rec["result"]
    assert res["extra"]["per_rank_batch"] == 16 and res["extra"]["world_size"] == 2
    assert 0 <= res["final_acc"] <= 100 and len(res["curve"]) == 1
    assert not [p for p in (store / "checkpoints").rglob("*") if p.is_file() and p.suffix != ".lock"]
    # a second launch, through launch() (a notebook's torchrun subprocess), reads the record
    (again,) = launch([{**KD, "train": {**RECIPE, "epochs": 1}}], store, nproc=2, progress=False, device="cpu",
                      echo=False)
    assert again["key"] == line["key"] and again["written"] == rec["written"]


# --- teachers from a file -----------------------------------------------------------------------------------------
def test_weights_in_torchvision_format(tmp_path):
    import torchvision

    tv = torchvision.models.resnet18(weights=None, num_classes=10)
    torch.save(tv.state_dict(), tmp_path / "tv.pt")
    model = build_model("resnet18", 10)
    load_weights(tmp_path / "tv.pt", model)
    assert torch.equal(model.head.weight, tv.fc.weight) and torch.equal(model.body.conv1.weight, tv.conv1.weight)


def test_a_teacher_file_is_keyed_by_its_content(tmp_path):
    torch.manual_seed(0)
    torch.save(build_model("convnet_small", 10, 1).state_dict(), tmp_path / "a.pt")
    shutil.copy(tmp_path / "a.pt", tmp_path / "moved.pt")
    torch.manual_seed(1)
    torch.save(build_model("convnet_small", 10, 1).state_dict(), tmp_path / "b.pt")
    key = {name: RunConfig.from_dict({**KD, "teacher_checkpoint": str(tmp_path / name)}).key()
           for name in ("a.pt", "moved.pt", "b.pt")}
    assert key["a.pt"] == key["moved.pt"] != key["b.pt"]


def test_a_student_distils_from_a_teacher_file_kept_under_teachers(tmp_path, one_thread):
    torch.manual_seed(0)
    teacher = build_model("convnet_small", 10, 1)
    torch.save(teacher.state_dict(), tmp_path / "teacher.pt")
    cfg = RunConfig.from_dict({**KD, "teacher_checkpoint": str(tmp_path / "teacher.pt")})
    rec = Study(tmp_path / "store", device="cpu", progress=False).run(cfg)
    trec = Store(tmp_path / "store").done("teachers", rec["teacher_key"])
    assert (rec["status"], trec["source"], trec["config"]["checkpoint"]["sha256"]) == \
        ("done", str(tmp_path / "teacher.pt"), WeightsFile(str(tmp_path / "teacher.pt")).sha256)


def test_a_changed_teacher_file_is_refused(tmp_path):
    torch.manual_seed(0)
    torch.save(build_model("convnet_small", 10, 1).state_dict(), tmp_path / "teacher.pt")
    spec = WeightsFile(str(tmp_path / "teacher.pt"))
    torch.save(build_model("convnet_small", 10, 1).state_dict(), tmp_path / "teacher.pt")
    with pytest.raises(ValueError, match="the file changed since the run was planned"):
        spec.load_into(build_model("convnet_small", 10, 1))


# --- image folders through Study and torchrun ---------------------------------------------------------------------
def test_a_kd_run_on_an_image_folder_keeps_its_teacher_under_teachers(digits_folder, tmp_path, one_thread):
    """The teacher of a KD run on an image folder is a TeacherConfig under teachers/ (trained on the full folder);
    a second student with the same teacher reuses it."""
    store = Store(tmp_path / "store")
    study = Study(store, device="cpu", progress=False)
    first = study.run(folder_run(digits_folder, teacher="convnet_small", fraction=0.5, alpha=0.5))
    trec = store.done("teachers", first["teacher_key"])
    second = Study(store, device="cpu", progress=False).run(folder_run(digits_folder, teacher="convnet_small",
                                                                       fraction=0.75, alpha=0.5))
    assert (first["status"], first["n_train"], first["n_full"], first["n_test"]) == ("done", 40, 80, 40)
    assert "NOT ImageNet" in first["data_source"] and trec["result"]["steps"] == 2 * 5  # 80 images / 16, 2 epochs
    assert second["teacher_key"] == first["teacher_key"]
    assert store.done("teachers", first["teacher_key"])["written"] == trec["written"]  # read, not retrained
    assert [p.stem for p in store.root.joinpath("teachers").glob("*.json")] == [first["teacher_key"]]
    assert not list(store.root.joinpath("runs").glob("*.pt"))
    assert not [p for p in store.root.joinpath("checkpoints").rglob("*") if p.is_file() and p.suffix != ".lock"]


def test_torchrun_one_process_equals_the_in_process_image_folder_run(digits_folder, tmp_path, one_thread,
                                                                     monkeypatch):
    """The same image-folder KD RunConfig through run_grid(executor='torchrun', nproc=1) and Study.run here: one
    key, one teacher (key and weights), the same losses and accuracy curve."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cfg = folder_run(digits_folder, teacher="convnet_small", fraction=0.5, alpha=0.5)
    row = run_grid([cfg], tmp_path / "ddp", executor="torchrun", nproc=1, device="cpu", progress=False).iloc[0]
    rec = Store(tmp_path / "ddp").done("runs", row["key"])
    alone = Study(tmp_path / "alone", device="cpu", progress=False).run(cfg)
    assert (rec["key"], rec["teacher_key"]) == (alone["key"], alone["teacher_key"])
    assert Store(tmp_path / "ddp").done("teachers", rec["teacher_key"])["sha256"] == \
        Store(tmp_path / "alone").done("teachers", alone["teacher_key"])["sha256"]
    for k in ("losses", "curve"):
        assert rec["result"][k] == canonical(alone["result"][k]), k


@pytest.mark.slow
def test_torchrun_image_folder_with_kd(tmp_path):
    """The streamed folder pipeline under torchrun on 2 processes: teacher (full data, under teachers/) then the KD
    student on a random half."""
    from kdlib.imagenet import export_image_folder

    root = export_image_folder("digits", tmp_path / "digits_folder", per_class=16, image_size=24, val_per_class=8)
    store = tmp_path / "store"
    spec = {"dataset": "image_folder", "model": "convnet_small", "teacher": "convnet_small",
            "data": {"root": str(root), "image_size": 16, "crop_scale": [0.35, 1.0], "workers": 1,
                     "eval_batch_size": 64},
            "train": {"epochs": 2, "batch_size": 16, "lr": 0.05, "schedule": "cosine"}, "fraction": 0.5,
            "alpha": 0.5}
    (line,) = torchrun(launch_file(tmp_path, store, [spec]))
    rec = Store(store).done("runs", line["key"])
    assert rec["n_train"] == 80 and rec["n_full"] == 160 and rec["n_test"] == 80 and rec["world_size"] == 2
    assert "NOT ImageNet" in rec["data_source"] and rec["config"]["data"]["fingerprint"]
    teacher = Store(store).done("teachers", rec["teacher_key"])
    assert teacher["result"]["steps"] == 2 * 10 and "sha256" in teacher


def test_records_of_the_earlier_image_folder_config_are_left_out(digits_folder, store, put_record, tmp_path,
                                                                  one_thread):
    """A DistConfig record (kdlib before image-folder runs were RunConfigs: its config held data_root, data_id,
    workers) is never served: load_records leaves it out, with a warning, beside today's record of the same run."""
    from kdlib.study import load_records

    old = {"dataset": "image_folder", "data_root": str(digits_folder), "image_size": 16, "model": "convnet_small",
           "method": "random", "fraction": 1.0, "alpha": 0.0, "seed": 0, "data_id": "image_folder:0123456789abcdef"}
    put_record(old, result={"final_acc": 99.0})
    Study(store, device="cpu", progress=False).run(folder_run(digits_folder))
    with pytest.warns(UserWarning, match="1 run record"):
        table = load_records(store)
    assert table["key"].tolist() == [folder_run(digits_folder).key()]
