"""Model surgery for groups of runs: K networks of one architecture as one *wide* network, and back.

Each convolution becomes a grouped convolution with K groups, each BatchNorm covers the K networks' channels
(BatchNorm is per channel, so statistics stay per network), each linear layer a batched matmul. SGD with momentum
and weight decay is elementwise, so one optimiser over the wide parameters is K independent optimisers. The wide
network takes (N, K*C, H, W), network k reading channel block k, and returns (N, K*classes).
"""
from __future__ import annotations

import copy
from typing import Optional, Sequence

import torch
from torch import nn

# Modules without parameters that act per channel (or elementwise) and so are valid in a stacked network.
_CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Hardswish,
                nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Identity)


class StackedLinear(nn.Module):
    """K independent ``nn.Linear`` layers applied to the K blocks of the last dimension: (..., K*in) -> (..., K*out)."""

    def __init__(self, layers: Sequence[nn.Linear]) -> None:
        super().__init__()
        self.k = len(layers)
        self.weight = nn.Parameter(torch.stack([m.weight.detach() for m in layers]).clone())  # (K, out, in)
        self.bias = None if layers[0].bias is None else nn.Parameter(
            torch.stack([m.bias.detach() for m in layers]).clone())  # (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        xk = x.reshape(-1, self.k, self.weight.shape[2]).transpose(0, 1)  # (K, M, in)
        out = torch.bmm(xk, self.weight.transpose(1, 2))  # (K, M, out); autocast runs bmm in bf16 like linear
        if self.bias is not None:
            out = out + self.bias[:, None, :].to(out.dtype)
        return out.transpose(0, 1).reshape(*lead, -1)


def _stack_leaf(mods: Sequence[nn.Module], name: str) -> nn.Module:
    """The wide replacement of K corresponding leaf modules."""
    m0, k = mods[0], len(mods)
    if type(m0) is nn.Conv2d:
        if m0.padding_mode != "zeros":
            raise ValueError(f"cannot stack {name}: padding_mode {m0.padding_mode!r}")
        wide = nn.Conv2d(k * m0.in_channels, k * m0.out_channels, m0.kernel_size, m0.stride, m0.padding,
                         m0.dilation, k * m0.groups, bias=m0.bias is not None)
        with torch.no_grad():
            wide.weight.copy_(torch.cat([m.weight for m in mods]))
            if m0.bias is not None:
                wide.bias.copy_(torch.cat([m.bias for m in mods]))
        return wide
    if type(m0) is nn.BatchNorm2d:
        wide = nn.BatchNorm2d(k * m0.num_features, m0.eps, m0.momentum, m0.affine, m0.track_running_stats)
        with torch.no_grad():
            for attr in ("weight", "bias", "running_mean", "running_var"):
                if getattr(m0, attr) is not None:
                    getattr(wide, attr).copy_(torch.cat([getattr(m, attr) for m in mods]))
            if m0.num_batches_tracked is not None:
                counts = {int(m.num_batches_tracked) for m in mods}
                if len(counts) != 1 and m0.momentum is None:  # the counter sets a cumulative average's weight
                    raise ValueError(f"cannot stack {name}: BatchNorm counters differ {sorted(counts)}")
                wide.num_batches_tracked.copy_(m0.num_batches_tracked)
        return wide
    if type(m0) is nn.Linear:
        return StackedLinear(mods)
    if isinstance(m0, _CHANNELWISE):
        if isinstance(m0, nn.Flatten) and m0.start_dim != 1:
            raise ValueError(f"cannot stack {name}: Flatten(start_dim={m0.start_dim})")
        return copy.deepcopy(m0)
    raise ValueError(f"cannot stack {name} ({type(m0).__name__}): only Conv2d, BatchNorm2d, Linear and "
                     f"parameter-free channel-wise modules stack; train the group with mode='loop'")


def stack_models(models: Sequence[nn.Module], example: Optional[torch.Tensor] = None) -> nn.Module:
    """One wide network computing the K ``models`` at once: input (N, K*C, H, W), output (N, K*classes).

    The models must share their architecture. Every leaf must be a Conv2d, BatchNorm2d, Linear or a
    parameter-free channel-wise module; other code in ``forward`` must treat channels independently, which is
    checked on ``example`` (a few inputs, (n, C, H, W)) in eval mode when given. Raises ValueError otherwise.
    """
    if len(models) < 1:
        raise ValueError("need at least one model to stack")
    named = [dict(m.named_modules()) for m in models]
    shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
    if any(list(n) != list(named[0]) for n in named[1:]) or any(sh != shapes[0] for sh in shapes[1:]) or \
            any(type(n[k]) is not type(named[0][k]) for n in named[1:] for k in named[0]):
        raise ValueError("cannot stack models of different architectures")
    wide = copy.deepcopy(models[0])
    wide_named = dict(wide.named_modules())
    for name, mod in named[0].items():
        own = list(mod.parameters(recurse=False)) + list(mod.buffers(recurse=False))
        if not own and any(True for _ in mod.children()):
            continue  # a container: its children are replaced below
        new = _stack_leaf([n[name] for n in named], name or type(mod).__name__)
        if name == "":
            wide = new
            break
        parent_name, _, attr = name.rpartition(".")
        setattr(wide_named[parent_name], attr, new)
    if example is not None:
        _check_stacked(models, wide, example)
    return wide


@torch.no_grad()
def _check_stacked(models: Sequence[nn.Module], wide: nn.Module, example: torch.Tensor) -> None:
    """Raises ValueError unless ``wide`` reproduces every model on ``example`` (eval mode, fp32)."""
    k = len(models)
    states = [m.training for m in models] + [wide.training]
    for m in (*models, wide):
        m.eval()
    try:
        dev = next(wide.parameters()).device
        x = example.to(dev, torch.float32)
        ref = torch.stack([m(x.contiguous()) for m in models], 1)  # (n, K, C)
        try:
            out = wide(x.repeat(1, k, 1, 1).contiguous()).reshape(ref.shape)
        except RuntimeError as err:  # e.g. a module reached under a second name was not widened
            raise ValueError(f"the stacked network fails on the example ({err}); train the group with "
                             f"mode='loop'") from err
        scale = ref.nan_to_num(0.0, 0.0, 0.0).abs().max().clamp_min(1.0)
        if not torch.allclose(out, ref, atol=1e-3 * float(scale), rtol=1e-3, equal_nan=True):
            raise ValueError("the stacked network does not reproduce the models (forward mixes channels across "
                             "students); train the group with mode='loop'")
    finally:
        for m, t in zip((*models, wide), states):
            m.train(t)


@torch.no_grad()
def unstack_into(wide: nn.Module, models: Sequence[nn.Module]) -> None:
    """Copies the wide network's parameters and buffers back into the K ``models`` (in place)."""
    k = len(models)
    wide_named = dict(wide.named_modules())
    for m_idx, model in enumerate(models):
        for name, mod in model.named_modules():
            src = wide_named[name]
            for attr, t in list(mod.named_parameters(recurse=False)) + list(mod.named_buffers(recurse=False)):
                s = getattr(src, attr)
                if attr == "num_batches_tracked":
                    t.copy_(s)
                    continue
                t.copy_(s.reshape(k, *t.shape)[m_idx] if s.dim() == t.dim() + 1 else s.chunk(k)[m_idx].view_as(t))


def stack_inputs(x: torch.Tensor, streams: Sequence[int], memory_format: torch.memory_format) -> torch.Tensor:
    """(N, K*C, H, W): the batch of stream ``streams[k]`` in channel block k, from ``x`` (S, N, C, H, W)."""
    s, n, c, h, w = x.shape
    if s == 1:
        return x[0].repeat(1, len(streams), 1, 1).contiguous(memory_format=memory_format)
    sel = torch.as_tensor(list(streams), device=x.device)
    return x.index_select(0, sel).transpose(0, 1).reshape(n, len(streams) * c, h, w).contiguous(
        memory_format=memory_format)
