import math

import pytest
import torch
import torch.nn.functional as F

from kdlib.distill import kd_loss, make_kd_loss


def test_kd_loss_matches_hand_computation():
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[0.0, 4.0, 0.0]])
    y = torch.tensor([0])
    alpha, tau = 0.3, 4.0
    ps = [math.exp(v / tau) for v in (2.0, 0.0, -1.0)]
    pt = [math.exp(v / tau) for v in (0.0, 4.0, 0.0)]
    ps = [p / sum(ps) for p in ps]
    pt = [p / sum(pt) for p in pt]
    kl = sum(b * math.log(b / a) for a, b in zip(ps, pt))
    ce = -math.log(math.exp(2.0) / (math.exp(2.0) + 1 + math.exp(-1.0)))
    expected = (1 - alpha) * ce + alpha * tau**2 * kl
    assert kd_loss(s, t, y, alpha, tau).item() == pytest.approx(expected, rel=1e-6)


def test_alpha_zero_is_cross_entropy_and_needs_no_teacher():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(8, 5, generator=g)
    y = torch.randint(0, 5, (8,), generator=g)
    assert torch.equal(kd_loss(s, None, y, 0.0), F.cross_entropy(s, y))


def test_alpha_one_is_pure_kd_and_zero_when_equal():
    s = torch.randn(4, 3)
    y = torch.zeros(4, dtype=torch.long)
    assert kd_loss(s, s.clone(), y, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_needs_teacher_when_alpha_positive():
    with pytest.raises(ValueError, match="teacher"):
        kd_loss(torch.randn(2, 3), None, torch.zeros(2, dtype=torch.long), 0.5)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, "x"])
def test_bad_alpha_names_parameter(alpha):
    with pytest.raises(ValueError, match="alpha"):
        make_kd_loss("kd", alpha, 4.0)


def test_unknown_loss_lists_allowed():
    with pytest.raises(ValueError, match="kd_loss.*kd"):
        make_kd_loss("nope", 0.5, 4.0)


def test_the_stacked_kd_loss_is_each_students_kd_loss():
    """kd_loss_stacked of K students equals kd_loss of each one's slices (alpha 0, between, 1; taus differ)."""
    import torch

    from kdlib.distill import kd_loss, kd_loss_stacked

    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 4, 10, generator=g), torch.randn(16, 4, 10, generator=g)
    y = torch.randint(0, 10, (16, 4), generator=g)
    alpha, tau = torch.tensor([0.0, 0.3, 0.9, 1.0]), torch.tensor([4.0, 2.0, 4.0, 1.0])
    want = torch.stack([kd_loss(s[:, k], t[:, k], y[:, k], float(alpha[k]), float(tau[k])) for k in range(4)])
    assert torch.allclose(kd_loss_stacked(s, t, y, alpha, tau), want, rtol=1e-5, atol=1e-6)
