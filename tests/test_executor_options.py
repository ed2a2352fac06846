"""A notebook's ``executor_options``: run_grid's executor arguments, checked by name before anything runs."""
from __future__ import annotations

import pytest

from kdlib.study import check_executor_options


def test_known_options_pass_through():
    assert check_executor_options({"workers": 4, "runs_per_gpu": 2}) == {"workers": 4, "runs_per_gpu": 2}


def test_an_unknown_option_is_named():
    with pytest.raises(ValueError, match=r"unknown executor_options \['runs_per_gpus'\]"):
        check_executor_options({"runs_per_gpus": 2})


def test_the_error_lists_the_allowed_options():
    with pytest.raises(ValueError, match="allowed: .*runs_per_gpu.*slurm"):
        check_executor_options({"runs_per_gpus": 2})


def test_the_grid_s_own_arguments_are_not_options():
    with pytest.raises(ValueError, match=r"\['executor'\]"):
        check_executor_options({"executor": "ray"})


def test_a_non_mapping_is_refused():
    with pytest.raises(ValueError, match="executor_options must be a mapping"):
        check_executor_options(["workers", 4])
