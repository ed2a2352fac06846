"""The slurm executor: its settings are checked and become sbatch options; teachers and score caches go out before
the runs that need them, each wave one job array; on submitit's local backend a grid gives the records of the
local executor, and a preempted job requeues itself and resumes its run from the store's checkpoint."""
import os
from pathlib import Path

import pytest

from grid_helpers import RESUME_CONFIG, PreemptedOnceStudy, RecordingStudy, one_thread, tiny_config  # noqa: F401
from kdlib.executors import run_parallel
from kdlib.prune import ProxyConfig
from kdlib.store import Store
from kdlib.study import Study, expand_grid, run_grid
from kdlib.train import TrainConfig

submitit = pytest.importorskip("submitit")
from kdlib.slurm import SlurmOptions, sbatch_script  # noqa: E402

HERE = Path(__file__).parent
TINY = TrainConfig(epochs=2, batch_size=32, lr=0.05, schedule="cosine")


def test_an_unknown_slurm_setting_is_named_with_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown slurm setting\(s\) \['partion'\]; allowed: account, additional, "
                                         r"array_parallelism, checkpoint_every, cluster, constraint, cpus, folder"):
        SlurmOptions.from_dict({"partion": "gpu"})


@pytest.mark.parametrize("setting, message", [
    ({"gpus": -1}, "slurm.gpus must be an integer >= 0"),
    ({"time": "4:00:00"}, "slurm.time must be an integer >= 1 (minutes)"),
    ({"cluster": "pbs"}, "allowed values for 'slurm.cluster': slurm, local"),
    ({"setup": "module load cuda"}, "slurm.setup must be a list of shell lines"),
])
def test_a_bad_slurm_value_names_its_key(setting, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SlurmOptions.from_dict(setting)


def test_the_slurm_mapping_becomes_the_sbatch_options():
    script = sbatch_script({"partition": "gpu", "account": "lab", "time": 240, "gpus": 1, "cpus": 8, "mem_gb": 32,
                            "array_parallelism": 16}, array_size=570)
    wanted = ["--partition=gpu", "--account=lab", "--time=240", "--gpus-per-node=1", "--cpus-per-task=8",
              "--mem=32GB", "--array=0-569%16", "--signal=USR2@120"]
    assert [w for w in wanted if f"#SBATCH {w}\n" not in script] == []


def test_slurm_settings_need_the_slurm_executor(tmp_path):
    with pytest.raises(ValueError, match="it needs executor='slurm', not 'processes'"):
        run_grid([tiny_config()], tmp_path, executor="processes", slurm={"gpus": 1})


def test_a_cuda_device_without_slurm_gpus_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"device='cuda' but slurm.gpus=0"):
        run_grid([tiny_config()], tmp_path, device="cuda", executor="slurm", slurm={"cluster": "local"})


@pytest.fixture
def arrays(monkeypatch):
    """Replaces submitit's executor by one that runs each job at once in this process; returns the list of
    submitted arrays, each the list of its jobs' (task, Checkpointable?)."""
    submitted = []

    class Job:
        job_id = "0"

        def __init__(self, value):
            self.value = value

        def done(self):
            return True

        def result(self):
            return self.value

    class Executor:
        def __init__(self, folder, cluster, **kw):
            pass

        def update_parameters(self, **kw):
            pass

        def map_array(self, fn, *columns):
            submitted.append([(args[0], isinstance(fn, submitit.helpers.Checkpointable)) for args in zip(*columns)])
            return [Job(fn(*args)) for args in zip(*columns)]

    monkeypatch.setattr(submitit, "AutoExecutor", Executor)
    return submitted


def test_teachers_and_scores_go_out_before_the_runs_that_need_them_one_array_per_wave(tmp_path, arrays):
    configs = [tiny_config(seed=1, alpha=0.5),                                   # a teacher
               tiny_config(seed=1, fraction=0.5, method="forgetting"),         # a score cache
               tiny_config(seed=1, fraction=0.5, method="forgetting", alpha=0.5),  # both
               tiny_config(seed=2)]                                            # neither
    run_parallel(configs, tmp_path, progress=False, executor="slurm", slurm={"cluster": "local"},
                 study_class=RecordingStudy, group_size=1)
    assert [sorted(a) for a in arrays] == [[("runs", True), ("scores", True), ("teacher", True)], [("runs", True)] * 3]


def test_a_slurm_job_runs_a_chunk_of_groups_once_its_teachers_and_scores_exist(tmp_path, arrays):
    configs = [tiny_config(seed=1, fraction=0.5, method="forgetting"), tiny_config(seed=2, fraction=0.5),
               tiny_config(seed=3, fraction=0.5, alpha=0.5)]  # one group key: one job for the three
    run_parallel(configs, tmp_path, progress=False, executor="slurm", slurm={"cluster": "local"},
                 study_class=RecordingStudy, group_size=4)
    assert [sorted(a) for a in arrays] == [[("scores", True), ("teacher", True)], [("runs", True)]]


# --- on submitit's local backend ---------------------------------------------------------------------------------
def grid():
    """A teacher, a score cache and four runs that need them in every combination (digits, 2 epochs)."""
    base = tiny_config(seed=1, fraction=0.2, proxy=ProxyConfig(train=TINY))
    return expand_grid(base, {"method": ["random", "forgetting"], "alpha": [0.0, 0.5]})


@pytest.mark.slow  # 35-70 s on 2 shared cores: three waves of jobs, each a fresh Python that imports torch
def test_a_grid_on_slurm_local_gives_the_records_of_the_local_executor(tmp_path, one_thread):
    ref = run_grid(grid(), tmp_path / "local", progress=False)
    df = run_grid(grid(), tmp_path / "slurm", progress=False, executor="slurm",
                  slurm={"cluster": "local", "cpus": 1, "folder": str(tmp_path / "logs" / "%j")})
    got = [Store(tmp_path / "slurm").get("runs", k)["result"] for k in df.key]
    want = [Store(tmp_path / "local").get("runs", k)["result"] for k in ref.key]
    assert (df.key.tolist(), [(r["final_acc"], r["losses"], r["curve"]) for r in got]) == \
        (ref.key.tolist(), [(r["final_acc"], r["losses"], r["curve"]) for r in want])


@pytest.fixture(scope="module")
def preempted(tmp_path_factory):
    """A store whose run, a SLURM job on the local backend, was preempted in its third epoch, requeued itself and
    finished; and its record."""
    root = tmp_path_factory.mktemp("preempted")
    env = dict(os.environ)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])  # the job imports grid_helpers
    try:
        (rec,) = run_parallel([RESUME_CONFIG], root / "store", progress=False, executor="slurm", study_class=PreemptedOnceStudy,
                              slurm={"cluster": "local", "checkpoint_every": 0, "folder": str(root / "logs" / "%j")})
    finally:
        os.environ.clear()
        os.environ.update(env)
    return root, rec


@pytest.mark.slow  # 15-30 s: a teacher job, then the run's job twice
def test_a_preempted_job_is_requeued_and_resumes_from_the_checkpoint_of_its_second_epoch(preempted):
    root, _ = preempted
    assert (root / "resumed_from").read_text() == "2"


@pytest.mark.slow
def test_a_preempted_and_requeued_run_ends_with_the_uninterrupted_record(preempted, tmp_path, one_thread):
    _, rec = preempted
    key = Study(tmp_path, device="cpu", progress=False).run(RESUME_CONFIG)["key"]
    whole = Store(tmp_path).get("runs", key)["result"]  # as read back from JSON, as the job's record was
    assert (rec["result"]["final_acc"], rec["result"]["losses"], rec["result"]["curve"]) == \
        (whole["final_acc"], whole["losses"], whole["curve"])




# --- issue 25, items 10-12 and 15 (array size): what a job script may not be made to say ----------------------
@pytest.mark.parametrize("setting", ["name", "partition", "account", "qos", "constraint", "folder"])
def test_a_newline_in_a_text_option_is_refused(setting):
    with pytest.raises(ValueError, match=f"slurm.{setting} must not contain control characters"):
        SlurmOptions.from_dict({setting: "gpu\nsrun touch /tmp/owned"})


def test_a_control_character_in_a_setup_line_is_refused():
    with pytest.raises(ValueError, match=r"slurm.setup\[1\] must not contain control characters"):
        SlurmOptions.from_dict({"setup": ["module load cuda", "source env\rrm -rf ~"]})


def test_a_newline_in_an_additional_value_is_refused():
    with pytest.raises(ValueError, match=r"slurm.additional\['gres'\] must not contain control characters"):
        SlurmOptions.from_dict({"additional": {"gres": "gpu:1\n#SBATCH --time=9999"}})


@pytest.mark.parametrize("name, own", [("time", "time"), ("array", "array"), ("output", "output"),
                                       ("job_name", "job-name"), ("tim", "time"), ("mem", "mem"),
                                       ("signal", "signal"), ("o", "open-mode")])
def test_additional_cannot_override_kdlibs_own_settings(name, own):
    with pytest.raises(ValueError, match=f"slurm.additional\\['{name}'\\]: --{own} is kdlib's own sbatch setting"):
        SlurmOptions.from_dict({"additional": {name: 1}})


@pytest.mark.parametrize("value", [None, False, {"a": 1}, [1], "", float("nan")])
def test_an_additional_value_that_is_not_a_string_number_or_true_is_refused(value):
    with pytest.raises(ValueError, match=r"slurm.additional\['gres'\] must be"):
        SlurmOptions.from_dict({"additional": {"gres": value}})


def test_additional_flags_and_own_options_that_look_like_prefixes_are_written():
    script = sbatch_script({"additional": {"exclusive": True, "gpus": 2, "gres": "gpu:a100:1"}})
    assert [w for w in ("--exclusive", "--gpus=2", "--gres=gpu:a100:1") if f"#SBATCH {w}\n" not in script] == []


@pytest.mark.parametrize("mem_gb", [0.0005, 0.5])
def test_mem_gb_below_one_is_refused(mem_gb):
    with pytest.raises(ValueError, match=r"slurm.mem_gb must be a number >= 1 \(GB"):
        SlurmOptions.from_dict({"mem_gb": mem_gb})


def test_an_array_over_the_maximum_is_written_in_chunks():
    assert "#SBATCH --array=0-999%256\n" in sbatch_script({}, array_size=2500)


def test_the_array_maximum_is_configurable():
    assert "#SBATCH --array=0-9%10\n" in sbatch_script({"max_array_size": 10}, array_size=25)


def test_array_chunks_cover_every_job_once():
    assert [len(c) for c in SlurmOptions(max_array_size=4).array_chunks(10)] == [4, 4, 2]


def test_a_wave_over_the_array_maximum_goes_out_as_several_arrays(tmp_path, arrays):
    from kdlib.slurm import SlurmPool

    pool = SlurmPool(SlurmOptions(cluster="local", max_array_size=2), tmp_path, lambda task, cfg, spec: {})
    handles = [pool.submit("run", seed, None) for seed in range(5)]
    pool.wait(handles)
    assert [len(a) for a in arrays] == [2, 2, 1]
