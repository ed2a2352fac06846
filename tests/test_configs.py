"""Strict, canonical configs (issue 12, cases 2, 4, 5, 6): every field of every config is type-checked and
normalised where the config is built, so a bad value fails at once and equal experiments have equal keys."""
import dataclasses
import re

import numpy as np
import pytest

from kdlib.imagenet import FolderSpec
from kdlib.prune import ProxyConfig
from kdlib.study import RunConfig, TeacherConfig
from kdlib.train import TrainConfig
from kdlib.weights import WeightsFile

NAN, INF = float("nan"), float("inf")

# config -> (base keyword arguments, {field: (a value of the wrong type, a bad value of the right type)}).
# The bad value is out of range where the field has a range, an unknown name for a name, and None for a boolean.
FIELDS = {
    TrainConfig: ({}, {
        "epochs": ("3", 0), "batch_size": ("32", -1), "lr": ("0.1", NAN), "momentum": ("0.9", -5),
        "weight_decay": ("5e-4", -1e-4), "nesterov": ("false", None), "schedule": (3, "linear"),
        "milestones": ("0.5", (0.5, 1.5)), "gamma": ("0.1", INF), "warmup_epochs": ("1", -1), "budget": (1, "images"),
        "min_steps": (1.5, -1), "precision": (16, "fp8"), "channels_last": ("yes", None), "augment": ("false", None),
        "eval_every": ("1", 0),
    }),
    ProxyConfig: ({}, {
        "model": (5, "vgg16"), "train": (5, {"lr": -1}), "n_models": ("2", 0), "score_epoch": ("1", -1),
    }),
    RunConfig: ({"teacher": "convnet_small"}, {
        "dataset": (5, "mnist"), "model": (5, "vgg16"), "teacher": (5, "vgg16"), "method": (5, "magic"),
        "fraction": ("0.1", 0), "alpha": ("high", 1.2), "tau": ("4", -INF), "kd_loss": (5, "mse2"), "seed": (1.5, -1),
        "score_seed": ("1", -1), "class_balanced": ("no", None), "teacher_fraction": ("0.2", 1.5),
        "label_noise": ("0.1", 1.0), "noise_seed": ("0", -1), "train": (5, {"lr": -1}),
        "teacher_train": (5, {"epochs": 0}), "proxy": (5, {"n_models": 0}), "alpha_rule": (5, ""),
        "method_params": (5, {"strata": 1}), "kd_params": ("beta", {"beta": 1.0}),
        "data": (5, {"root": ""}), "teacher_checkpoint": (5, "missing.pt"),
    }),
    TeacherConfig: ({"dataset": "digits", "model": "convnet_small", "seed": 0, "train": TrainConfig(epochs=1)}, {
        "dataset": (5, "mnist"), "model": (5, "vgg16"), "seed": ("0", -1), "train": (5, {"epochs": 0}),
        "fraction": ("0.2", 1.5), "label_noise": ("0.1", 1.0), "noise_seed": (0.5, 2**32),
        "data": (5, {"root": ""}), "checkpoint": (5, "missing.pt"),
    }),
    FolderSpec: ({"root": "/data/imagenet", "fingerprint": "0123456789abcdef"}, {
        "root": (5, ""), "image_size": ("224", 0), "crop_scale": (5, (0.5, 0.1)), "workers": ("8", -1),
        "eval_batch_size": ("256", 0), "fingerprint": (5, "not-hex"),
    }),
    WeightsFile: ({"path": "teacher.pt", "sha256": "0" * 64}, {"path": (5, ""), "sha256": (5, "abc")}),
}
CASES = [(cls, name, which, values[i]) for cls, (_, fields) in FIELDS.items() for name, values in fields.items()
         for i, which in enumerate(("wrong type", "bad value"))]


@pytest.mark.parametrize("cls", list(FIELDS), ids=lambda c: c.__name__)
def test_the_table_covers_every_field(cls):
    assert set(FIELDS[cls][1]) == {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls,name,which,value", CASES, ids=[f"{c.__name__}.{n}-{w}" for c, n, w, _ in CASES])
def test_every_field_fails_at_construction_naming_the_field(cls, name, which, value):
    base = FIELDS[cls][0]
    with pytest.raises(ValueError) as info:
        cls(**{**base, name: value})
    assert re.search(rf"(^|\W){name}(\W|$)", str(info.value)), str(info.value)


def test_error_names_the_exact_field():
    with pytest.raises(ValueError, match="^teacher_fraction must lie in"):
        RunConfig(teacher_fraction=1.5)
    with pytest.raises(ValueError, match="^noise_seed must"):
        RunConfig(noise_seed=-1)


# --- case 2: flags that silently flipped ------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: RunConfig(class_balanced="no"),
    lambda: RunConfig.from_dict({"train": {"augment": "false"}}),
    lambda: TrainConfig(channels_last="no"),
    lambda: TrainConfig(nesterov="yes"),
    lambda: TrainConfig(augment=0),
], ids=["class_balanced", "augment", "channels_last", "nesterov", "augment-int"])
def test_boolean_flags_must_be_booleans(make):
    with pytest.raises(ValueError, match="must be true or false"):
        make()


def test_numpy_booleans_are_accepted_as_booleans():
    assert RunConfig(class_balanced=np.bool_(True)).class_balanced is True


# --- case 4: one experiment, one key ----------------------------------------------------------------------------
@pytest.mark.parametrize("a,b", [
    ({"label_noise": 0}, {"label_noise": 0.0}),
    ({"tau": 4, "alpha": 0.5}, {"tau": 4.0, "alpha": 0.5}),
    ({"alpha": 1, "tau": 2}, {"alpha": 1.0, "tau": 2.0}),
    ({"fraction": np.float32(0.1), "method": "el2n"}, {"fraction": 0.1, "method": "el2n"}),
    ({"seed": np.int64(3)}, {"seed": 3}),
    ({"train": {"weight_decay": 0, "epochs": 2.0}}, {"train": {"weight_decay": 0.0, "epochs": 2}}),
    ({"train": {"milestones": [0.75, 0.5]}}, {"train": {"milestones": (0.5, 0.75)}}),
], ids=["label_noise", "tau", "alpha", "float32", "np.int64", "train", "milestones-order"])
def test_equal_experiments_have_equal_keys(a, b):
    base = {"teacher": "convnet_small"}
    assert RunConfig.from_dict({**base, **a}).key() == RunConfig.from_dict({**base, **b}).key()


def test_teacher_keys_are_canonical():
    t = dict(dataset="digits", model="convnet_small", train=TrainConfig(epochs=1))
    assert TeacherConfig(seed=np.int64(0), label_noise=0, fraction=1, **t).key() == \
        TeacherConfig(seed=0, label_noise=0.0, fraction=1.0, **t).key()


def test_normalised_values_have_canonical_types():
    cfg = RunConfig(seed=np.int64(2), tau=4, label_noise=0, teacher="convnet_small", alpha=np.float64(0.5),
                    train={"epochs": 2.0, "batch_size": np.int32(8), "weight_decay": 0})
    kinds = {k: type(getattr(cfg, k)) for k in ("seed", "tau", "label_noise", "alpha")}
    kinds.update({f"train.{k}": type(getattr(cfg.train, k)) for k in ("epochs", "batch_size", "weight_decay")})
    assert kinds == {"seed": int, "tau": float, "label_noise": float, "alpha": float, "train.epochs": int,
                     "train.batch_size": int, "train.weight_decay": float}


# --- case 5: values that passed validation and then aborted the grid ----------------------------------------------
def test_yaml_exponent_string_says_how_to_write_it():
    with pytest.raises(ValueError, match=r"weight_decay must be a number >= 0, got the string '5e-4' "
                                         r"\(YAML reads 5e-4 as a string: .* write 5.0e-4\)"):
        TrainConfig(weight_decay="5e-4")


@pytest.mark.parametrize("kw,pattern", [
    ({"momentum": -5}, "momentum must be a number >= 0, got -5"),
    ({"nesterov": True, "momentum": 0}, r"nesterov=True needs momentum > 0"),
    ({"epochs": 2.5}, "epochs must be a positive integer, got 2.5"),
    ({"batch_size": "64"}, "batch_size must be a positive integer, got the string '64'"),
])
def test_train_values_the_training_code_rejects(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**kw)


@pytest.mark.parametrize("kw,pattern", [
    ({"label_noise": "0.1"}, r"label_noise must be a number in \[0, 1\), got the string '0.1'"),
    ({"seed": -1}, r"seed must lie in \[0, 4294967295\], got -1"),
])
def test_run_values_the_training_code_rejects(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        RunConfig(**kw)


# --- case 6: NaN and infinity -----------------------------------------------------------------------------------
@pytest.mark.parametrize("make,name", [
    (lambda: TrainConfig(lr=NAN), "lr"),
    (lambda: RunConfig(tau=INF, alpha=0.5, teacher="convnet_small"), "tau"),
    (lambda: TrainConfig(gamma=NAN), "gamma"),
    (lambda: TrainConfig(warmup_epochs=INF), "warmup_epochs"),
    (lambda: RunConfig(fraction=NAN), "fraction"),
], ids=["lr", "tau", "gamma", "warmup_epochs", "fraction"])
def test_nan_and_infinity_fail_at_construction(make, name):
    with pytest.raises(ValueError, match=rf"^{name} must be .* and finite, got (nan|inf)"):
        make()
