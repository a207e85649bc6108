"""PyTorch restatement of `adapt.tuning.augment` (weak / strong views), batched, NCHW.

Same families and parameters as ours, one parameter draw per image: random resized crop (scale
0.5-1, ratio 3/4-4/3, bilinear, edge values outside) + horizontal flip, as one `grid_sample` with a
per-image affine; strong adds colour jitter (0.4) and two ops per image drawn uniformly from
{identity, autocontrast, solarize, posterize, sharpness, rotate, translate, shear} at magnitude
9/30. Unlike ours (where `lax.switch` under `vmap` evaluates all eight ops), each op runs only on
the images that drew it, and the three geometric ops share one `grid_sample`, the natural way to
write it in torch.

`draw(kind, b, gen)` returns the parameters; `apply(pixels, params)` applies them, so
`check_augment.py` can feed the parameters our JAX keys produce and compare outputs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAG = 9 / 30
GRAY = (0.299, 0.587, 0.114)


def draw(kind: str, b: int, gen: torch.Generator) -> dict:
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(b, generator=gen)
    p = dict(kind=kind, area=u(0.5, 1.0), logr=u(math.log(3 / 4), math.log(4 / 3)), top=u(0, 1),
             left=u(0, 1), flip=torch.rand(b, generator=gen) < 0.5)
    if kind == "strong":
        p["jitter"] = torch.stack([u(0.6, 1.4) for _ in range(3)], 1)  # brightness, contrast, saturation
        p["ops"] = [(torch.randint(0, 8, (b,), generator=gen), torch.rand(b, generator=gen) < 0.5) for _ in range(2)]
    return p


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Output pixel at normalised (u, v) samples x at theta @ (u, v, 1); edge values outside."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def crop_flip(x: torch.Tensor, p: dict) -> torch.Tensor:
    ch = torch.sqrt(p["area"] / torch.exp(p["logr"])).clamp(0.1, 1.0)  # crop size as a fraction
    cw = torch.sqrt(p["area"] * torch.exp(p["logr"])).clamp(0.1, 1.0)
    top, left = p["top"] * (1 - ch), p["left"] * (1 - cw)
    z = torch.zeros_like(ch)
    sx = torch.where(p["flip"], -cw, cw)
    theta = torch.stack([torch.stack([sx, z, 2 * left + cw - 1], 1), torch.stack([z, ch, 2 * top + ch - 1], 1)], 1)
    return _warp(x, theta)


def _gray(x):
    return (x * x.new_tensor(GRAY).view(1, 3, 1, 1)).sum(1, keepdim=True)


def color_jitter(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    b, c, s = (f[:, i].view(-1, 1, 1, 1) for i in range(3))
    x = x * b
    m = _gray(x).mean((1, 2, 3), keepdim=True)
    x = (x - m) * c + m
    g = _gray(x)
    return ((x - g) * s + g).clamp(0.0, 1.0)


def _sharpen(x):
    k = x.new_tensor([[1, 1, 1], [1, 5, 1], [1, 1, 1]]).div(13.0).expand(3, 1, 3, 3)
    blur = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=3)
    return (x + (1 + 1.8 * MAG) * (x - blur)).clamp(0, 1)


def _geometric_theta(op: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """(n, 2, 3) thetas for ops 5 rotate, 6 translate (0.45 m of the side), 7 shear; square images."""
    s = torch.where(sign, 1.0, -1.0)
    a = s * MAG * 30.0 * math.pi / 180
    one, z = torch.ones_like(s), torch.zeros_like(s)
    rot = torch.stack([torch.stack([a.cos(), a.sin(), z], 1), torch.stack([-a.sin(), a.cos(), z], 1)], 1)
    tr = torch.stack([torch.stack([one, z, 0.9 * s * MAG], 1), torch.stack([z, one, z], 1)], 1)
    sh = torch.stack([torch.stack([one, s * MAG * 0.3, z], 1), torch.stack([z, one, z], 1)], 1)
    return torch.where((op == 5).view(-1, 1, 1), rot, torch.where((op == 6).view(-1, 1, 1), tr, sh))


def rand_op(x: torch.Tensor, op: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    out = x.clone()
    bits = 2 ** (8 - round(4 * MAG))
    pixel_ops = {
        1: lambda v: (v - v.amin((2, 3), keepdim=True)) / (v.amax((2, 3), keepdim=True)
                                                           - v.amin((2, 3), keepdim=True)).clamp_min(1e-3),
        2: lambda v: torch.where(v >= 1.0 - MAG, 1.0 - v, v),
        3: lambda v: torch.floor(v * bits) / bits,
        4: _sharpen,
    }
    for k, fn in pixel_ops.items():
        idx = (op == k).nonzero().flatten()
        if len(idx):
            out[idx] = fn(x[idx])
    idx = (op >= 5).nonzero().flatten()
    if len(idx):
        out[idx] = _warp(x[idx], _geometric_theta(op[idx], sign[idx]))
    return out


def apply(pixels: torch.Tensor, p: dict, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """pixels (B, 3, H, W) normalised -> augmented, normalised."""
    x = crop_flip(pixels * std + mean, p)
    if p["kind"] == "strong":
        x = color_jitter(x, p["jitter"])
        for op, sign in p["ops"]:
            x = rand_op(x, op, sign)
    return (x - mean) / std


def augment(pixels: torch.Tensor, kind: str, gen: torch.Generator, mean, std) -> torch.Tensor:
    return apply(pixels, draw(kind, len(pixels), gen), mean, std)
