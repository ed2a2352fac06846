"""The pruning-method family: golden values of the scores, directions, exact budgets and reproducibility."""
import numpy as np
import pytest
import torch
from torch import nn

from kdlib.data import load_dataset
from kdlib.prune import METHODS, ProxyConfig, ScoreContext, class_budgets
from kdlib.prune.ccs import allocate, ccs_beta, ccs_select
from kdlib.prune.deepcore import deepfool_distances, glister_order, omp_dual, omp_primal
from kdlib.prune.geometry import (covering_radius, facility_location_order, herding_order, kcenter_order,
                                  keep_middle, median_distances)
from kdlib.prune.proxy import (build_proxy, count_forgetting, el2n_from_logits, forward_train_set,
                               gradient_factors, gradient_gram, gradient_matrix, knn_divergence)
from kdlib.prune.scores import (el2n_run, entropy_score, grand_run, forgetting_scores, least_confidence_score,
                                margin_score, per_sample_grad_norms)
from kdlib.study import RunConfig, Study
from kdlib.train import TrainConfig

TINY_PROXY = ProxyConfig(model="convnet_small", train=TrainConfig(epochs=1, batch_size=128, lr=0.05,
                                                                  schedule="cosine", precision="fp32"),
                         n_models=1, score_epoch=1)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models on shared cores run faster (and steadier) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def select(name, arrays, labels, k, seed=0, balanced=False):
    return METHODS.get(name).select(arrays, np.asarray(labels), k, np.random.default_rng(seed), balanced)


# ----------------------------------------------------------------------------------------------- EL2N / GraNd
def test_el2n_golden_values():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0], [5.0, 5.0]])
    got = el2n_from_logits(logits, np.array([0, 1, 1]))
    # softmax (0.5, 0.5) vs (1, 0); (0.75, 0.25) vs (0, 1); (0.5, 0.5) vs (0, 1)
    assert np.allclose(got, [np.sqrt(0.5), np.sqrt(2 * 0.75**2), np.sqrt(0.5)])


def test_early_scores_at_init_match_the_model():
    data = load_dataset("digits")
    proxy = ProxyConfig(model="convnet_small", train=TINY_PROXY.train, n_models=1, score_epoch=0)
    ctx = ScoreContext(data, data.y_train, proxy, "convnet_small", seed=3, device="cpu", progress=False)
    arrays = {**el2n_run(ctx), **grand_run(ctx)}
    model = build_proxy(ctx, 0)
    logits, _ = forward_train_set(model, data, "cpu")
    assert np.allclose(arrays["el2n"], el2n_from_logits(logits, data.y_train), atol=1e-6)
    # GraNd: full-parameter per-sample gradient norm, checked against plain autograd on a few samples
    model.eval()
    for i in (0, 7, 100):
        x = data.normalize(data.x_train[i:i + 1])
        loss = nn.functional.cross_entropy(model(x), data.y_train[i:i + 1])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        want = torch.sqrt(sum((g ** 2).sum() for g in grads)).item()
        assert arrays["grand"][i] == pytest.approx(want, rel=1e-4)


def test_per_sample_grad_norms_of_a_linear_model():
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    x = torch.randn(5, 1, 1, 3)
    y = torch.tensor([0, 1, 1, 0, 1])
    p = torch.softmax(model(x), 1).detach()
    u = p - nn.functional.one_hot(y, 2)
    v = torch.cat([x.flatten(1), torch.ones(5, 1)], 1)
    want = u.norm(dim=1) * v.norm(dim=1)  # |u ⊗ [x, 1]|
    assert np.allclose(per_sample_grad_norms(model, x, y), want.numpy(), rtol=1e-5)


# ----------------------------------------------------------------------------------------------- forgetting
SCRIPT = np.array([  # epochs x samples: 1 = classified correctly
    [0, 1, 0, 1],
    [1, 1, 0, 0],
    [0, 1, 0, 0],
    [1, 1, 0, 1],
    [0, 1, 0, 1],
], dtype=bool)


def test_forgetting_counts_learned_to_forgotten_transitions():
    counts, ever = count_forgetting(SCRIPT)
    assert counts.tolist() == [2, 0, 0, 1]
    assert ever.tolist() == [True, True, False, True]


def test_never_learned_choice_is_explicit():
    counts, ever = count_forgetting(SCRIPT)
    assert forgetting_scores(counts, ever, "max").tolist() == [2, 0, 3, 1]  # most forgettable (official code)
    assert forgetting_scores(counts, ever, "zero").tolist() == [2, 0, 0, 1]  # DeepCore / CCS
    arrays = {"forgetting": counts, "ever_learned": ever}
    assert select("forgetting", arrays, [0] * 4, 1).tolist() == [2]
    assert select("forgetting_zero", arrays, [0] * 4, 1).tolist() == [0]
    with pytest.raises(ValueError, match="never_learned"):
        forgetting_scores(counts, ever, "inf")


# ----------------------------------------------------------------------------------------------- uncertainty
@pytest.mark.parametrize("name,score", [("least_confidence", least_confidence_score), ("entropy", entropy_score),
                                        ("margin", margin_score)])
def test_uncertainty_direction(name, score):
    probs = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25]])
    s = score(probs)
    assert s[0] < s[1]  # the confident sample scores lower (easier)
    assert METHODS.get(name).keeps == "hardest"
    arrays = {"logits": np.log(probs)}
    assert select(name, arrays, [0, 0], 1).tolist() == [1]  # the uncertain one is kept


# ----------------------------------------------------------------------------------------------- geometry
def test_herding_first_pick_is_nearest_the_mean_and_tracks_it():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5)) + np.array([3.0, 0, 0, 0, 0])
    order = herding_order(x, 20)
    mu = x.mean(0)
    assert order[0] == np.argmin(np.linalg.norm(x - mu, axis=1))
    assert len(set(order.tolist())) == 20
    # the running mean of the herded points is closer to mu than a random subset's mean
    err = np.linalg.norm(x[order].mean(0) - mu)
    rand = [np.linalg.norm(x[rng.choice(200, 20, replace=False)].mean(0) - mu) for _ in range(20)]
    assert err < min(rand)


def test_herding_method_is_per_class():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 50)
    emb = rng.normal(size=(100, 4)) + labels[:, None] * 10
    idx = select("herding", {"embeddings": emb}, labels, 2)
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        nearest = members[np.argmin(np.linalg.norm(emb[members] - emb[members].mean(0), axis=1))]
        assert nearest in idx


def test_kcenter_covering_radius_no_larger_than_random():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(loc=c, size=(100, 2)) for c in ((0, 0), (8, 0), (0, 8), (20, 20))])
    centres = kcenter_order(x, 25, first=0)
    assert len(set(centres.tolist())) == 25
    greedy = covering_radius(x, centres)
    randoms = [covering_radius(x, rng.choice(len(x), 25, replace=False)) for _ in range(20)]
    assert greedy <= min(randoms)
    idx = select("kcenter", {"embeddings": x}, np.zeros(len(x), int), 25, seed=4)
    assert covering_radius(x, idx) <= min(randoms)


def test_kcenter_with_duplicates_returns_distinct_points():
    x = np.zeros((10, 3))
    assert sorted(kcenter_order(x, 10, first=3).tolist()) == list(range(10))


def test_facility_location_lazy_greedy_equals_naive_greedy():
    rng = np.random.default_rng(2)
    f = rng.normal(size=(60, 4))
    sim = np.exp(-((f[:, None] - f[None]) ** 2).sum(-1) / 4).astype(np.float32)
    got = facility_location_order(sim, 15)
    cur, naive = np.zeros(60, np.float32), []
    for _ in range(15):
        gains = np.maximum(sim - cur[:, None], 0).sum(0)
        gains[naive] = -np.inf
        naive.append(int(np.argmax(gains)))
        cur = np.maximum(cur, sim[naive[-1]])
    assert got.tolist() == naive


def test_moderate_keeps_points_nearest_the_median_distance():
    assert keep_middle(np.arange(11.0), np.zeros(11, int), 3, np.random.default_rng(0)).tolist() == [4, 5, 6]
    emb = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [-2.0, 0.0], [0.0, 5.0], [0.0, -0.5], [10.0, 1.0]])
    labels = np.zeros(len(emb), int)
    d = median_distances(emb, labels)
    assert np.allclose(d, np.linalg.norm(emb - np.median(emb, axis=0), axis=1))
    kept = select("moderate", {"embeddings": emb}, labels, 3)
    order = np.argsort(d)
    assert sorted(kept.tolist()) == sorted(order[2:5].tolist())  # ranks 2..4 of 7: the median band
    assert METHODS.get("moderate").keeps == "representative"


# ----------------------------------------------------------------------------------------------- CCS
def test_ccs_allocation_fills_sparse_strata_first_and_is_exact():
    assert allocate(10, np.array([1, 5, 100])).tolist() == [1, 4, 5]
    for budget in (0, 7, 33, 106):
        sizes = np.array([3, 0, 8, 2, 50, 1])
        out = allocate(budget, sizes)
        assert out.sum() == min(budget, sizes.sum()) and (out <= sizes).all()


def test_ccs_never_keeps_the_pruned_hardest_slice():
    rng = np.random.default_rng(0)
    n = 1000
    aum = rng.normal(size=n)
    labels = rng.integers(0, 5, n)
    assert ccs_beta(0.1) == pytest.approx(0.3) and ccs_beta(0.5) == 0.0 and ccs_beta(0.05) == pytest.approx(0.35)
    for balanced in (False, True):
        k = 100
        idx = select("ccs", {"aum": aum}, labels, k, seed=1, balanced=balanced)
        assert len(idx) == k and len(np.unique(idx)) == k
        if balanced:
            for c in range(5):
                members = np.flatnonzero(labels == c)
                hardest = members[np.argsort(aum[members])[:round(0.3 * len(members))]]
                assert not np.isin(idx, hardest).any()
        else:
            hardest = np.argsort(aum)[:300]  # low AUM = hard
            assert not np.isin(idx, hardest).any()
    # an explicit beta = 0 may keep hard samples; stratified sampling covers the whole score range
    idx = ccs_select(-aum, labels, 200, np.random.default_rng(0), beta=0.0)
    assert aum[idx].min() < np.quantile(aum, 0.05) and aum[idx].max() > np.quantile(aum, 0.95)


# ----------------------------------------------------------------------------------------------- DeepCore family
def test_deepfool_on_a_linear_model_is_the_distance_to_the_boundary():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    x = torch.randn(6, 1, 2, 2)
    got = deepfool_distances(model, x, 2)
    w, b = model[1].weight.detach(), model[1].bias.detach()
    f = x.flatten(1) @ w.T + b
    dw = (w[1] - w[0]).norm()
    want = ((f[:, 1] - f[:, 0]).abs() + 1e-4) / dw * 1.02
    assert np.allclose(got, want.numpy(), rtol=1e-4)
    assert METHODS.get("deepfool").select({"deepfool": got}, np.zeros(6, int), 1, np.random.default_rng(0),
                                          False).tolist() == [int(np.argmin(got))]


def test_gradient_factors_are_last_layer_gradients():
    torch.manual_seed(0)
    head = nn.Linear(3, 4)
    h = torch.randn(5, 3)
    y = torch.tensor([0, 3, 1, 1, 2])
    z = head(h)
    u, v = gradient_factors(z.detach().numpy(), y.numpy(), h.numpy())
    g = gradient_matrix(u, v)
    for i in range(5):
        head.zero_grad()
        nn.functional.cross_entropy(head(h[i:i + 1]), y[i:i + 1]).backward()
        want = torch.cat([head.bias.grad[:, None], head.weight.grad], 1).flatten()
        assert np.allclose(g[i], want.numpy(), atol=1e-6)
    assert np.allclose(gradient_gram(u, v), g @ g.T)


def test_gradmatch_primal_and_dual_omp_agree():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 40))
    b = a.mean(1)
    assert omp_primal(a, b, 15).tolist() == omp_dual(a.T @ a, a.T @ b, 15).tolist()


def test_glister_first_pick_has_the_largest_gradient_alignment():
    rng = np.random.default_rng(4)
    logits, emb, labels = rng.normal(size=(30, 3)), rng.normal(size=(30, 5)), rng.integers(0, 3, 30)
    u, v = gradient_factors(logits, labels, emb)
    g = gradient_matrix(u, v)
    order = glister_order(logits, labels, emb, 5, eta=0.1)
    assert order[0] == np.argmax(g @ g.mean(0)) and len(set(order.tolist())) == 5


def test_cal_divergence_is_zero_for_identical_predictions():
    emb = np.random.default_rng(0).normal(size=(20, 3))
    assert np.allclose(knn_divergence(emb, np.full((20, 4), 0.25)), 0.0)
    probs = np.full((20, 4), 0.25)
    probs[0] = [0.97, 0.01, 0.01, 0.01]
    assert np.argmax(knn_divergence(emb, probs)) == 0


# ----------------------------------------------------------------------------------------------- reproducibility
def test_same_seed_same_subset():
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 3, n)
    arrays = {"embeddings": rng.normal(size=(n, 4)), "aum": rng.normal(size=n).round(1),
              "el2n": rng.integers(0, 5, n).astype(float)}
    for name in ("kcenter", "ccs", "el2n", "moderate"):
        a, b = select(name, arrays, labels, 50, seed=7), select(name, arrays, labels, 50, seed=7)
        assert np.array_equal(a, b), name
    assert not np.array_equal(select("ccs", arrays, labels, 50, seed=7), select("ccs", arrays, labels, 50, seed=8))


def test_every_method_declares_keeps_and_doc():
    for name in METHODS:
        m = METHODS.get(name)
        assert m.doc and m.keeps in ("random", "hardest", "easiest", "stratified", "diverse", "representative")


@pytest.mark.parametrize("balanced", [False, True])
def test_every_method_returns_exactly_k_distinct_indices_through_study(tmp_path_factory, balanced):
    store = tmp_path_factory.getbasetemp() / "prune_store"  # shared by both parametrisations: scores once
    study = Study(store, device="cpu", progress=False)
    labels = study.data("digits").y_train.numpy()
    for name in METHODS:
        for fraction in (0.05, 0.5):
            cfg = RunConfig(dataset="digits", model="convnet_small", method=name, fraction=fraction,
                            class_balanced=balanced, proxy=TINY_PROXY, seed=0)
            idx = study.subset(cfg)
            k = round(fraction * len(labels))
            assert len(idx) == k and len(np.unique(idx)) == k, name
            if balanced:
                want = class_budgets(labels, k)
                got = dict(zip(*np.unique(labels[idx], return_counts=True)))
                assert all(got.get(c, 0) == want[c] for c in want), name
            assert np.array_equal(idx, study.subset(cfg)), name  # same seed, same subset


def test_greedy_orders_are_prefixes_and_the_memo_changes_nothing():
    from kdlib.prune.orders import ORDERS
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1, 2], 40)
    arrays = {"embeddings": rng.normal(size=(120, 6)).astype(np.float32),
              "logits": rng.normal(size=(120, 3)).astype(np.float32), "lr": np.asarray(0.1)}
    for name in ("herding", "kcenter", "facility_location", "graph_cut", "craig", "gradmatch", "glister"):
        ORDERS.clear()
        small, large = select(name, arrays, labels, 30, seed=2), select(name, arrays, labels, 60, seed=2)
        again = select(name, arrays, labels, 30, seed=2)  # served by the memo
        ORDERS.clear()
        fresh = select(name, arrays, labels, 30, seed=2)
        assert np.array_equal(small, again) and np.array_equal(small, fresh), name
        if name != "glister":  # batched rounds depend on k
            assert np.isin(small, large).all(), name
