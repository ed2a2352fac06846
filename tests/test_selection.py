import numpy as np
import pytest

from kdlib.prune import METHODS, budget, class_budgets, keep_high, keep_low, keep_random


@pytest.mark.parametrize("n,f,k", [(100, 0.1, 10), (1437, 0.05, 72), (7, 0.5, 4), (10, 1.0, 10), (50, 0.001, 1)])
def test_budget_is_round_f_n(n, f, k):
    assert budget(n, f) == k


@pytest.mark.parametrize("f", [0.0, -0.1, 1.01, 2])
def test_bad_fraction_names_parameter(f):
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\]"):
        budget(10, f)


def test_class_budgets_exact_and_proportional():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 20)
    b = class_budgets(labels, 33)
    assert sum(b.values()) == 33
    assert b == {0: 17, 1: 10, 2: 6} or b == {0: 16, 1: 10, 2: 7}
    for c, n_c in zip((0, 1, 2), (50, 30, 20)):
        assert abs(b[c] - 33 * n_c / 100) < 1


@pytest.mark.parametrize("balanced", [False, True])
def test_random_subset_exact_size_and_balance(balanced):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 1000)
    for k in (1, 37, 500, 1000):
        idx = keep_random(labels, k, np.random.default_rng(1), balanced)
        assert len(idx) == k and len(np.unique(idx)) == k
        if balanced:
            want = class_budgets(labels, k)
            got = dict(zip(*np.unique(labels[idx], return_counts=True)))
            assert all(got.get(c, 0) == want[c] for c in want)


def test_same_seed_same_subset():
    labels = np.arange(200) % 4
    a = METHODS.get("random").select({}, labels, 50, np.random.default_rng(3), False)
    b = METHODS.get("random").select({}, labels, 50, np.random.default_rng(3), False)
    c = METHODS.get("random").select({}, labels, 50, np.random.default_rng(4), False)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_keep_high_and_low_directions():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.2, 0.3])
    labels = np.array([0, 0, 0, 1, 1, 1])
    rng = np.random.default_rng(0)
    assert list(keep_high(scores, labels, 2, rng)) == [1, 3]
    assert list(keep_low(scores, labels, 2, rng)) == [0, 4]
    assert list(keep_high(scores, labels, 2, rng, class_balanced=True)) == [1, 3]
    assert list(keep_low(scores, labels, 4, rng, class_balanced=True)) == [0, 2, 4, 5]


def test_unknown_method_lists_allowed():
    with pytest.raises(ValueError, match="method.*random"):
        METHODS.get("nonexistent")
