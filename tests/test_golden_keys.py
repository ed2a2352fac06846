"""Keys of runs, teachers and score caches on in-memory data are frozen: a store made before image-folder runs became
RunConfigs (issue 13) is served unchanged. The hex literals were computed on main at e297f34, before that change."""
import pytest

from kdlib.study import RunConfig, ScoreSpec, TeacherConfig

DIGITS_RANDOM_CE = RunConfig(dataset="digits", model="convnet", method="random", fraction=0.5, seed=0)
FMNIST_EL2N_KD = RunConfig(dataset="fashion_mnist", model="resnet8", teacher="resnet8", method="el2n", fraction=0.3,
                           alpha=0.5, seed=1)
CIFAR_CCS = RunConfig(dataset="cifar10", model="resnet20", method="ccs", fraction=0.5, seed=2)


@pytest.mark.parametrize("cfg,key", [
    (RunConfig(), "db282d74914f3e83"),
    (DIGITS_RANDOM_CE, "e931d70d8e144df8"),
    (FMNIST_EL2N_KD, "37317702aaf3db06"),
    (CIFAR_CCS, "78f1684a394765d9"),
], ids=["digits-full", "digits-random-ce", "fashion_mnist-el2n-kd", "cifar10-ccs"])
def test_run_keys_on_in_memory_data_are_unchanged(cfg, key):
    assert cfg.key() == key


def test_teacher_key_on_in_memory_data_is_unchanged():
    assert TeacherConfig.of(FMNIST_EL2N_KD).key() == "362df6ae18851641"


@pytest.mark.parametrize("cfg,key", [(FMNIST_EL2N_KD, "f907c031fdfea1fb"), (CIFAR_CCS, "03b1378b45f51981")],
                         ids=["el2n", "ccs"])
def test_score_keys_on_in_memory_data_are_unchanged(cfg, key):
    assert ScoreSpec.of(cfg).key() == key


def test_new_fields_stay_out_of_in_memory_identities():
    assert not {"data", "teacher_checkpoint"} & set(FMNIST_EL2N_KD.identity())
