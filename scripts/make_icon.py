"""Writes ``docs/icon.png``: the pack's icon for the Comfy Registry and ComfyUI-Manager.

A 400x400 PNG (the registry's largest icon size, square): the name over a strip of sampling
steps, computed steps in the node plot's green and reused steps dim, as AdaCache Apply draws
a run.

    .venv/bin/python scripts/make_icon.py
"""

from __future__ import annotations

from pathlib import Path

from make_example_workflows import _font  # scripts/ is this script's sys.path[0]
from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "docs" / "icon.png"
SIZE = 400
PATTERN = "CC..C...C..C.CC"  # a run as the log prints it: C computed, . reused


def draw(size: int = SIZE) -> Image.Image:
    scale = 4  # drawn large, then downsampled for smooth edges
    s = size * scale
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    d.rounded_rectangle((0, 0, s - 1, s - 1), radius=s // 7, fill=(40, 42, 74))
    d.text((s // 2, int(s * 0.36)), "Ada", font=_font(int(s * 0.34), bold=True),
           fill=(240, 240, 255), anchor="mm")
    d.text((s // 2, int(s * 0.60)), "Cache", font=_font(int(s * 0.15), bold=True),
           fill=(170, 190, 255), anchor="mm")
    n, margin, gap = len(PATTERN), int(s * 0.09), int(s * 0.012)
    cell = (s - 2 * margin - gap * (n - 1)) / n
    y0, y1 = int(s * 0.75), int(s * 0.86)
    for i, step in enumerate(PATTERN):
        x0 = margin + i * (cell + gap)
        computed = step == "C"
        d.rounded_rectangle(
            (int(x0), y0 if computed else y0 + (y1 - y0) // 2, int(x0 + cell), y1),
            radius=int(cell * 0.2),
            fill=(80, 200, 120) if computed else (95, 100, 140),
        )
    return img.resize((size, size), Image.LANCZOS)


def main() -> None:
    OUT.parent.mkdir(exist_ok=True)
    draw().save(OUT, "PNG", optimize=True)
    print(f"wrote {OUT.relative_to(OUT.parents[1])}")


if __name__ == "__main__":
    main()
