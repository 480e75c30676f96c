"""The validation zoo's synthetic video world: 8 motion classes from static to fast (pure torch).

Training data of ``scripts/train_zoo_model.py`` and the class references of ``benchmarks/zoo.py``.
Not part of the product (nothing in ``adacache/`` or ``nodes/`` imports it); no ComfyUI import.

Same frame format and latent mapping as the demo world (``nodes/demo_latent.py``: 16x16 RGB x
8 frames <-> a 16 x 8 x 8x8 model-space latent by 2x2 pixel-unshuffle), but other scenes, so that
the zoo models are not trained on the data the demo model (and the schedule rule) saw.

Every video has 1-2 objects (disc, square, ring or bar, in eight colours) over a backdrop whose
tint marks the class. Speeds are for 16x16 frames:

==================  ==========================================================================
static              nothing moves
slow drift          every object drifts 0.1-0.25 px/frame
fast motion         every object moves 2.0-2.8 px/frame and bounces off the frame edges
camera pan          objects still in the world; the camera pans 1.2-1.8 px/frame sideways or
                    up/down over a checkered backdrop (the whole frame moves)
zooming ring        a ring around the centre grows (or shrinks) by 18-28 % per frame
rotation            a bar spins about the centre at 25-40 degrees/frame, a dot orbits with it
colour flicker      nothing moves; backdrop and objects alternate between two colours per frame
crossing            two objects run at each other (1.2-1.8 px/frame) and cross mid-video
==================  ==========================================================================
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

SCENES = ["static", "slow drift", "fast motion", "camera pan", "zooming ring", "rotation",
          "colour flicker", "crossing"]
FRAMES = 8
RGB_HW = 16

PALETTE = torch.tensor([
    [0.98, 0.45, 0.10],  # orange
    [0.55, 0.95, 0.15],  # lime
    [0.30, 0.55, 1.00],  # sky blue
    [1.00, 0.95, 0.55],  # cream
    [0.85, 0.20, 0.55],  # raspberry
    [0.20, 0.95, 0.70],  # mint
    [0.70, 0.40, 1.00],  # violet
    [0.95, 0.95, 0.95],  # white
])
BACKGROUNDS = torch.tensor([  # one per class, in SCENES order
    [0.20, 0.05, 0.05],  # static: maroon
    [0.05, 0.18, 0.22],  # slow drift: teal
    [0.18, 0.18, 0.05],  # fast motion: olive
    [0.22, 0.12, 0.22],  # camera pan: plum (checkered)
    [0.05, 0.05, 0.22],  # zooming ring: indigo
    [0.25, 0.15, 0.05],  # rotation: umber
    [0.12, 0.12, 0.12],  # colour flicker: grey (flickers)
    [0.04, 0.20, 0.08],  # crossing: forest
])

DISC, SQUARE, RING, BAR = 0, 1, 2, 3


def demo_latent():
    """``nodes/demo_latent.py`` (the shared latent mapping), loaded without the pack."""
    name = "adacache_demo_latent"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "nodes" / "demo_latent.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def rgb_to_latent(rgb: torch.Tensor) -> torch.Tensor:
    return demo_latent().rgb_to_latent(rgb)


def latent_to_rgb(z: torch.Tensor) -> torch.Tensor:
    return demo_latent().latent_to_rgb(z)


def render_scenes(classes: torch.Tensor, generator: torch.Generator,
                  frames: int = FRAMES, size: int = RGB_HW) -> torch.Tensor:
    """One random video per entry of ``classes`` (indices into SCENES): RGB [B, 3, T, S, S].

    Random numbers are drawn on the generator's device in a fixed order, so a seed gives the
    same batch every time.
    """
    dev = generator.device
    b, k = classes.shape[0], 2
    sc = size / 16.0

    def rand(*shape):
        return torch.rand(*shape, generator=generator, device=dev)

    def sign(*shape):
        return torch.where(rand(*shape) < 0.5, -1.0, 1.0)

    cls = classes.to(dev)
    is_ = [(cls == i) for i in range(len(SCENES))]
    t = torch.arange(frames, device=dev, dtype=torch.float32)
    centre = size / 2.0

    # backdrop tint + a random diagonal gradient
    bg = BACKGROUNDS.to(dev)[cls] + (rand(b, 1) - 0.5) * 0.06
    gdir = rand(b) * 2 * math.pi
    gamp = rand(b) * 0.15
    # objects: colour pairs (second colour used by flicker), shapes, sizes
    perm = torch.stack([torch.randperm(len(PALETTE), generator=generator, device=dev)[:2 * k]
                        for _ in range(b)])
    col_a, col_b = PALETTE.to(dev)[perm[:, :k]], PALETTE.to(dev)[perm[:, k:]]  # [B, K, 3]
    shape = (rand(b, k) < 0.5).long()  # disc or square
    radius = (2.0 + rand(b, k) * 1.5) * sc
    present = torch.ones(b, k, device=dev, dtype=torch.bool)
    present[:, 1] = rand(b) < 0.6
    margin = 3.0 * sc
    pos0 = margin + rand(b, k, 2) * (size - 2 * margin)
    ang = rand(b, k) * 2 * math.pi
    speed = torch.zeros(b, k, device=dev)
    speed = torch.where(is_[1][:, None], (0.1 + rand(b, k) * 0.15) * sc, speed)
    speed = torch.where(is_[2][:, None], (2.0 + rand(b, k) * 0.8) * sc, speed)
    vel = torch.stack([torch.cos(ang), torch.sin(ang)], -1) * speed[..., None]
    pos = pos0[:, :, None, :] + vel[:, :, None, :] * t[None, None, :, None]  # [B, K, T, 2]
    pos = demo_latent().bounce(pos, margin - sc, size - margin + sc)

    # camera pan: a screen offset per frame, horizontal or vertical
    pan_speed = is_[3].float() * (1.2 + rand(b) * 0.6) * sc * sign(b)
    vertical = rand(b) < 0.4
    offset = pan_speed[:, None] * t[None, :]  # [B, T]
    off_x = torch.where(vertical[:, None], torch.zeros_like(offset), offset)
    off_y = torch.where(vertical[:, None], offset, torch.zeros_like(offset))
    pos = pos - torch.stack([off_x, off_y], -1)[:, None]
    checker_phase = rand(b, 2) * 6.0 * sc

    # crossing: two objects on one line, running at each other
    cross_speed = (1.2 + rand(b) * 0.6) * sc
    cross_y = margin + 2.0 * sc + rand(b) * (size - 2 * margin - 4.0 * sc)
    start = torch.stack([torch.full((b,), 2.5 * sc, device=dev),
                         torch.full((b,), size - 2.5 * sc, device=dev)], 1)  # [B, 2]
    flip = sign(b)[:, None]
    start = centre + (start - centre) * flip
    step = (start[:, :, None] - centre).sign() * cross_speed[:, None, None]
    xs_cross = start[:, :, None] - step * t[None, None, :]
    ys_cross = cross_y[:, None, None] + torch.tensor([-0.8, 0.8], device=dev)[None, :, None] * sc
    cross_pos = torch.stack([xs_cross, ys_cross.expand_as(xs_cross)], -1)
    pos = torch.where(is_[7][:, None, None, None], cross_pos, pos)
    present = torch.where(is_[7][:, None], torch.ones_like(present), present)

    # zooming ring: slot 0 is a ring about the centre, slot 1 absent
    growth = 1.18 + rand(b) * 0.10
    grow = rand(b) < 0.5
    r_start = torch.where(grow, torch.full((b,), 1.2 * sc, device=dev),
                          torch.full((b,), 7.0 * sc, device=dev))
    ring_r = r_start[:, None] * torch.where(grow, growth, 1.0 / growth)[:, None] ** t[None, :]
    ring_c = centre + (rand(b, 2) - 0.5) * 2.0 * sc

    # rotation: slot 0 is a bar through the centre, slot 1 a dot orbiting with it
    omega = math.radians(25) + rand(b) * math.radians(15)
    theta = rand(b)[:, None] * math.pi + (omega * sign(b))[:, None] * t[None, :]  # [B, T]
    bar_half = (5.0 + rand(b)) * sc
    orbit = 5.5 * sc
    dot = torch.stack([centre + orbit * torch.cos(theta + math.pi / 2),
                       centre + orbit * torch.sin(theta + math.pi / 2)], -1)  # [B, T, 2]
    rot = is_[5]
    pos[:, 1] = torch.where(rot[:, None, None], dot, pos[:, 1])
    radius[:, 1] = torch.where(rot, 1.6 * sc, radius[:, 1])
    present[:, 1] = torch.where(rot, torch.ones_like(present[:, 1]), present[:, 1])

    # colour flicker: colours alternate frame by frame
    odd = (t % 2 == 1).float()  # [T]
    flick = is_[6].float()[:, None] * odd[None, :]  # [B, T]
    bg_alt = bg.flip(-1) * 0.5 + 0.35  # a much brighter, other-hued backdrop

    ys = torch.arange(size, device=dev, dtype=torch.float32) + 0.5
    xs = torch.arange(size, device=dev, dtype=torch.float32) + 0.5
    yy, xx = ys[:, None].expand(size, size), xs[None, :].expand(size, size)
    grad = gamp[:, None, None] * (((xx - centre) * torch.cos(gdir)[:, None, None]
                                   + (yy - centre) * torch.sin(gdir)[:, None, None]) / size)
    base = bg[:, :, None, None, None] + grad[:, None, None]  # [B, 3, 1, H, W]
    base = base.expand(b, 3, frames, size, size)
    alt = bg_alt[:, :, None, None, None] + grad[:, None, None]
    img = base * (1 - flick[:, None, :, None, None]) + alt * flick[:, None, :, None, None]
    # checkered backdrop of the pan class, fixed in the world
    wx = xx[None, None] + off_x[:, :, None, None] + checker_phase[:, 0, None, None, None]
    wy = yy[None, None] + off_y[:, :, None, None] + checker_phase[:, 1, None, None, None]
    checker = torch.sin(2 * math.pi * wx / (6.0 * sc)) * torch.sin(2 * math.pi * wy / (6.0 * sc))
    img = img + (0.12 * is_[3].float()[:, None, None, None] * checker)[:, None]

    def paint(img, alpha, colour):  # alpha [B, T, H, W], colour [B, T, 3]
        a = alpha[:, None]
        return img * (1 - a) + colour.permute(0, 2, 1)[:, :, :, None, None] * a

    for j in range(k):
        cx = pos[:, j, :, 0][:, :, None, None]
        cy = pos[:, j, :, 1][:, :, None, None]
        dx, dy = xx[None, None] - cx, yy[None, None] - cy
        r = radius[:, j][:, None, None, None]
        d_disc = torch.sqrt(dx * dx + dy * dy)
        d_sq = torch.maximum(dx.abs(), dy.abs())
        d = torch.where((shape[:, j] == SQUARE)[:, None, None, None], d_sq, d_disc)
        alpha = (r + 0.5 - d).clamp(0, 1) * present[:, j][:, None, None, None]
        if j == 0:  # ring and bar replace slot 0 in their classes
            rx, ry = xx[None, None] - ring_c[:, 0, None, None, None], \
                yy[None, None] - ring_c[:, 1, None, None, None]
            d_ring = (torch.sqrt(rx * rx + ry * ry) - ring_r[:, :, None, None]).abs()
            a_ring = (1.3 * sc + 0.5 - d_ring).clamp(0, 1)
            alpha = torch.where(is_[4][:, None, None, None], a_ring, alpha)
            ux, uy = torch.cos(theta)[:, :, None, None], torch.sin(theta)[:, :, None, None]
            bx, by = xx[None, None] - centre, yy[None, None] - centre
            along = bx * ux + by * uy
            across = (-bx * uy + by * ux).abs()
            d_bar = torch.maximum(across - 1.0 * sc, along.abs() - bar_half[:, None, None, None])
            a_bar = (0.5 - d_bar).clamp(0, 1)
            alpha = torch.where(rot[:, None, None, None], a_bar, alpha)
        colour = col_a[:, j][:, None, :].expand(b, frames, 3)
        colour = colour + (col_b[:, j][:, None, :] - colour) * flick[:, :, None]
        img = paint(img, alpha, colour)
    return img.clamp(0, 1)


def motion_score(rgb: torch.Tensor) -> float:
    """Mean absolute difference between consecutive frames of [B, 3, T, H, W] (0..1 scale)."""
    return (rgb[:, :, 1:] - rgb[:, :, :-1]).abs().mean().item()


def contact_sheet(videos: torch.Tensor, path: Path, scale: int = 8) -> None:
    """Write videos [N, 3, T, H, W] as a PNG: one row per video, frames left to right."""
    import numpy as np
    from PIL import Image

    n, _, frames, h, w = videos.shape
    gap = 2
    sheet = torch.ones(3, n * (h * scale + gap), frames * (w * scale + gap))
    for i in range(n):
        for f in range(frames):
            tile = videos[i, :, f].repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            y, x = i * (h * scale + gap), f * (w * scale + gap)
            sheet[:, y:y + h * scale, x:x + w * scale] = tile
    arr = (sheet.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


if __name__ == "__main__":  # a contact sheet of every class, and the motion ranking
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("zoo_scenes.png")
    g = torch.Generator().manual_seed(0)
    classes = torch.arange(len(SCENES)).repeat_interleave(2)
    videos = render_scenes(classes, g)
    contact_sheet(videos, out)
    for i, name in enumerate(SCENES):
        print(f"{name:15s} motion {motion_score(videos[classes == i]):.3f}")
