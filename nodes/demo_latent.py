"""AdaCache demo: the synthetic video world and its invertible latent mapping (pure torch).

Used by ``scripts/train_demo_model.py`` (training data), ``nodes/demo_nodes.py`` (the demo
decode node) and ``scripts/demo.py``. No ComfyUI import here.

Latent mapping (exactly invertible)
-----------------------------------
An RGB video ``[B, 3, T, 2H, 2W]`` with values in [0, 1] (the demo: 16x16 pixels, 8 frames,
so H = W = 8) maps to the model-space latent ``z`` of shape ``[B, 16, T, H, W]`` (one latent
frame per video frame, no temporal compression):

    z[:, 0:12]  = 2 * pixel_unshuffle(rgb, 2) - 1     # each 2x2 RGB patch -> 12 channels
    z[:, 12:16] = 0                                    # unused channels, always zero

``pixel_unshuffle`` orders channels as ``c * 4 + dy * 2 + dx`` (torch's convention). The inverse
is ``rgb = pixel_shuffle((z[:, 0:12] + 1) / 2, 2)``; channels 12..15 are ignored. "Model space"
is what the diffusion model sees. ComfyUI's LATENT carries the *Wan 2.1 latent format*: the
sampler applies ``process_latent_in`` (``(latent - mean) / std``) before the model and
``process_latent_out`` (``z * std + mean``) after, so the demo decode node applies
``process_latent_in`` first and then this inverse. Round trip of 8-bit frames is exact after
rounding to uint8 (``tests/test_demo_model.py``).

Scene classes
-------------
16x16 RGB frames, 8 frames, 1-2 objects (discs and squares, radius 2.5-4 px, in six saturated
colours) on a plain or vertical-gradient backdrop whose colour marks the class (charcoal, navy,
dark green, brown; speeds below for 16x16 frames):

==============  ============================================================================
static          nothing moves
slow drift      every object drifts 0.15-0.3 px/frame in its own direction
fast motion     every object moves 1.5-2.0 px/frame and bounces off the frame edges
camera pan      objects are still in the world; the camera pans 1.0-1.5 px/frame sideways
                over a striped background (everything in the frame moves together)
==============  ============================================================================

Intended motion ranking (mean absolute frame difference): static < slow drift < fast motion,
and camera pan > slow drift.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SCENES = ["static", "slow drift", "fast motion", "camera pan"]
FRAMES = 8
LATENT_HW = 8
RGB_HW = 2 * LATENT_HW
LATENT_CHANNELS = 16
DATA_CHANNELS = 12

PALETTE = torch.tensor(
    [
        [0.95, 0.15, 0.15],  # red
        [0.15, 0.85, 0.20],  # green
        [0.20, 0.35, 1.00],  # blue
        [1.00, 0.90, 0.10],  # yellow
        [0.95, 0.20, 0.90],  # magenta
        [0.10, 0.90, 0.95],  # cyan
    ]
)
BACKGROUNDS = torch.tensor(  # one per scene class, in SCENES order
    [
        [0.14, 0.14, 0.16],  # static: charcoal
        [0.08, 0.10, 0.30],  # slow drift: navy
        [0.08, 0.24, 0.10],  # fast motion: dark green
        [0.30, 0.20, 0.12],  # camera pan: brown (with stripes)
    ]
)


# --------------------------------------------------------------------------- latent mapping
def rgb_to_latent(rgb: torch.Tensor) -> torch.Tensor:
    """[B, 3, T, 2H, 2W] in [0, 1] -> model-space latent [B, 16, T, H, W]."""
    b, c, t, hh, ww = rgb.shape
    assert c == 3 and hh % 2 == 0 and ww % 2 == 0
    frames = rgb.permute(0, 2, 1, 3, 4).reshape(b * t, 3, hh, ww)
    z12 = F.pixel_unshuffle(frames, 2) * 2.0 - 1.0
    z12 = z12.reshape(b, t, DATA_CHANNELS, hh // 2, ww // 2).permute(0, 2, 1, 3, 4)
    pad = torch.zeros(b, LATENT_CHANNELS - DATA_CHANNELS, t, hh // 2, ww // 2, dtype=rgb.dtype,
                      device=rgb.device)
    return torch.cat([z12, pad], dim=1)


def latent_to_rgb(z: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Model-space latent [B, 16, T, H, W] -> RGB [B, 3, T, 2H, 2W] (clamped to [0, 1])."""
    b, _, t, h, w = z.shape
    z12 = z[:, :DATA_CHANNELS].permute(0, 2, 1, 3, 4).reshape(b * t, DATA_CHANNELS, h, w)
    rgb = F.pixel_shuffle((z12.float() + 1.0) / 2.0, 2)
    rgb = rgb.reshape(b, t, 3, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)
    return rgb.clamp(0.0, 1.0) if clamp else rgb


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb.clamp(0, 1) * 255.0).round().to(torch.uint8)


def motion_score(rgb: torch.Tensor) -> float:
    """Mean absolute difference between consecutive frames of [B, 3, T, H, W] (0..1 scale)."""
    return (rgb[:, :, 1:] - rgb[:, :, :-1]).abs().mean().item()


# --------------------------------------------------------------------------- scene synthesis
def bounce(p: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Reflect positions into [lo, hi] (a ball bouncing between two walls)."""
    span = hi - lo
    q = torch.remainder(p - lo, 2 * span)
    return lo + torch.where(q > span, 2 * span - q, q)


def render_scenes(classes: torch.Tensor, generator: torch.Generator,
                  frames: int = FRAMES, size: int = RGB_HW) -> torch.Tensor:
    """Render one random video per entry of ``classes`` (indices into SCENES).

    Returns RGB [B, 3, T, size, size] in [0, 1]. Vectorised; random numbers are drawn on the
    generator's device in a fixed order, so a seed gives the same batch every time.
    """
    dev = generator.device
    b = classes.shape[0]
    k = 2  # object slots; slot 1 is present with probability 1/2
    sc = size / 16.0  # lengths below are for 16x16 frames

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=dev)

    cls = classes.to(dev)
    # background: plain colour + optional vertical gradient
    # each scene class has its own backdrop colour (a strong, early-learned class signal)
    bg = BACKGROUNDS.to(dev)[cls] + (rand(b, 1) - 0.5) * 0.06  # [B, 3]
    grad = (rand(b) < 0.5).float() * 0.18
    # objects
    col_idx = torch.stack([torch.randperm(len(PALETTE), generator=generator, device=dev)[:k]
                           for _ in range(b)])
    cols = PALETTE.to(dev)[col_idx]  # [B, K, 3]
    shape_sq = rand(b, k) < 0.5  # square or disc
    radius = (2.5 + rand(b, k) * 1.5) * sc  # 2.5..4 px
    present = torch.ones(b, k, device=dev, dtype=torch.bool)
    present[:, 1] = rand(b) < 0.5
    margin = 3.0 * sc
    pos0 = margin + rand(b, k, 2) * (size - 2 * margin)  # (x, y)
    ang = rand(b, k) * 2 * math.pi
    speed = torch.zeros(b, k, device=dev)
    slow = (cls == 1)[:, None]
    fast = (cls == 2)[:, None]
    speed = torch.where(slow, (0.15 + rand(b, k) * 0.15) * sc, speed)
    speed = torch.where(fast, (1.5 + rand(b, k) * 0.5) * sc, speed)
    vel = torch.stack([torch.cos(ang), torch.sin(ang)], -1) * speed[..., None]  # [B, K, 2]
    pan = (cls == 3).float() * (1.0 + rand(b) * 0.5) * sc * torch.where(rand(b) < 0.5, -1.0, 1.0)
    stripe_phase = rand(b) * 2 * math.pi

    t = torch.arange(frames, device=dev, dtype=torch.float32)
    pos = pos0[:, :, None, :] + vel[:, :, None, :] * t[None, None, :, None]  # [B, K, T, 2]
    pos = bounce(pos, margin - sc, size - margin + sc)
    offset = pan[:, None] * t[None, :]  # [B, T] camera x offset (world = screen + offset)

    ys = torch.arange(size, device=dev, dtype=torch.float32) + 0.5
    xs = torch.arange(size, device=dev, dtype=torch.float32) + 0.5
    xw = xs[None, None, :] + offset[:, :, None]  # [B, T, W] world x
    # background [B, 3, T, H, W]
    is_pan = (cls == 3).float()[:, None, None]
    stripes = 0.10 * is_pan * torch.sin(2 * math.pi * xw / (8.0 * sc) + stripe_phase[:, None, None])
    vgrad = grad[:, None] * (ys[None, :] / size - 0.5)  # [B, H]
    img = (bg[:, :, None, None, None] + vgrad[:, None, None, :, None]
           + stripes[:, None, :, None, :]).expand(b, 3, frames, size, size).clone()
    # objects, painted in slot order
    for j in range(k):
        cx = pos[:, j, :, 0][:, :, None, None]  # [B, T, 1, 1]
        cy = pos[:, j, :, 1][:, :, None, None]
        # camera pan: objects are fixed in the world, so their screen x moves by -offset
        cx = cx - offset[:, :, None, None]
        dx = xs[None, None, None, :] - cx
        dy = ys[None, None, :, None] - cy
        r = radius[:, j][:, None, None, None]
        d_sq = torch.maximum(dx.abs(), dy.abs())
        d_disc = torch.sqrt(dx * dx + dy * dy)
        d = torch.where(shape_sq[:, j][:, None, None, None], d_sq, d_disc)
        alpha = (r + 0.5 - d).clamp(0, 1) * present[:, j][:, None, None, None]  # [B,T,H,W]
        img = img * (1 - alpha[:, None]) + cols[:, j][:, :, None, None, None] * alpha[:, None]
    return img.clamp(0, 1)
