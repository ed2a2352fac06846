"""Tests for kdlib.models: shapes, embed/head decomposition, parameter counts against RepDistiller."""
from __future__ import annotations

import pytest
import torch

from kdlib.models import MODELS, CifarResNet, build_model, count_parameters, model_names

CIFAR_RESNETS = {  # name -> (depth, num_filters), as in RepDistiller models/resnet.py
    "resnet8": (8, [16, 16, 32, 64]),
    "resnet14": (14, [16, 16, 32, 64]),
    "resnet20": (20, [16, 16, 32, 64]),
    "resnet32": (32, [16, 16, 32, 64]),
    "resnet44": (44, [16, 16, 32, 64]),
    "resnet56": (56, [16, 16, 32, 64]),
    "resnet110": (110, [16, 16, 32, 64]),
    "resnet8x4": (8, [32, 64, 128, 256]),
    "resnet32x4": (32, [32, 64, 128, 256]),
}
IMAGENET = {"resnet18", "resnet50"}
# Parameter counts (millions, CIFAR-100) reported for RepDistiller's models in the CRD paper (Tian et al. 2020).
PUBLISHED_100 = {"resnet20": 0.28, "resnet32": 0.47, "resnet56": 0.86, "resnet110": 1.73,
                 "resnet8x4": 1.23, "resnet32x4": 7.43}


def reference_count(depth: int, filters: list[int], num_classes: int, in_channels: int = 3) -> int:
    """Closed-form parameter count of a RepDistiller BasicBlock ResNet (BN has 2 parameters per channel)."""
    n = (depth - 2) // 6
    total = 9 * in_channels * filters[0] + 2 * filters[0]  # stem conv + BN
    c = filters[0]
    for stage, c_out in enumerate(filters[1:]):
        for i in range(n):
            total += 9 * c * c_out + 9 * c_out * c_out + 4 * c_out  # two 3x3 convs + two BNs
            if i == 0 and (stage > 0 or c != c_out):
                total += c * c_out + 2 * c_out  # 1x1 conv + BN shortcut
            c = c_out
    return total + c * num_classes + num_classes


def test_registry_names() -> None:
    assert set(model_names()) == set(CIFAR_RESNETS) | IMAGENET | {"convnet", "convnet_small", "convnet_large"}


def test_unknown_model_lists_allowed_names() -> None:
    with pytest.raises(ValueError, match="model") as info:
        build_model("resnet9000", 10)
    for name in model_names():
        assert name in str(info.value)


def test_bad_depth() -> None:
    with pytest.raises(ValueError, match="6n"):
        CifarResNet(10, [16, 16, 32, 64], 10)


@pytest.mark.parametrize("name", sorted(CIFAR_RESNETS))
@pytest.mark.parametrize("num_classes", [10, 100])
def test_cifar_resnet_parameter_count(name: str, num_classes: int) -> None:
    depth, filters = CIFAR_RESNETS[name]
    expected = reference_count(depth, filters, num_classes)
    assert count_parameters(build_model(name, num_classes)) == pytest.approx(expected, rel=0.01)
    assert count_parameters(build_model(name, num_classes, 1)) == reference_count(depth, filters, num_classes, 1)


def test_reference_count_golden_values() -> None:
    """Hand-derived values: resnet32 / CIFAR-100 = 472,756; resnet8 / 10 classes = 78,042."""
    assert reference_count(32, [16, 16, 32, 64], 100) == 472_756
    assert reference_count(8, [16, 16, 32, 64], 10) == 78_042


@pytest.mark.parametrize("name", sorted(PUBLISHED_100))
def test_published_parameter_counts(name: str) -> None:
    millions = count_parameters(build_model(name, 100)) / 1e6
    assert millions == pytest.approx(PUBLISHED_100[name], rel=0.01)


def test_torchvision_parameter_counts() -> None:
    assert count_parameters(build_model("resnet18", 1000)) == 11_689_512
    assert count_parameters(build_model("resnet50", 1000)) == 25_557_032


def _input_shapes(name: str) -> list[tuple[int, int, int]]:
    if name in IMAGENET:
        return [(3, 64, 64), (1, 32, 32)]
    return [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("name", sorted(set(CIFAR_RESNETS) | IMAGENET | {"convnet", "convnet_small", "convnet_large"}))
def test_forward_shapes_and_embed_head(name: str) -> None:
    torch.manual_seed(0)
    for c, h, w in _input_shapes(name):
        model = build_model(name, num_classes=7, in_channels=c).eval()
        x = torch.randn(2, c, h, w)
        with torch.no_grad():
            logits, emb = model(x), model.embed(x)
        assert logits.shape == (2, 7)
        assert emb.shape == (2, model.embedding_dim)
        assert isinstance(model.head, torch.nn.Linear) and model.head.out_features == 7
        torch.testing.assert_close(logits, model.head(emb))


@pytest.mark.parametrize("name", ["convnet", "resnet8", "resnet8x4"])
def test_channels_last_and_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, 10, in_channels=1).to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 28, 28).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().sum().backward()
    assert out.shape == (4, 10) and torch.isfinite(out.float()).all()
    assert all(p.grad is not None for p in model.parameters())


def test_kaiming_init_and_bn_constants() -> None:
    model = build_model("resnet20", 10)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)
    std = model.layer3[0].conv1.weight.std().item()
    assert std == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.1)  # kaiming fan_out: fan_out = 64 * 3 * 3


def test_registry_type() -> None:
    assert MODELS.family == "model" and MODELS.parameter == "model"
