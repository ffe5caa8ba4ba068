#!/usr/bin/python3
"""Generate tests/data/resize/: reference outputs of Pillow's Image.resize(..., LANCZOS) for
tests/test_resize.c (engine/resize.c must match them byte for byte).

diffusers' VaeImageProcessor resizes a ControlNet control image with
PIL.Image.resize((width, height), resample=PIL.Image.LANCZOS); the golden data used Pillow 9.4.
Run with the Pillow of that version (Debian 12's python3-pil) from the repository root:
    /usr/bin/python3 tools/gen_resize_fixtures.py
Writes small source images, one PNG per (source, size) pair and cases.txt listing
"source output width height" per line. Deterministic (fixed seed, no timestamps).
"""
import os
import random

import PIL
from PIL import Image

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "resize")


def noise(w, h, seed):
    rnd = random.Random(seed)
    return Image.frombytes("RGB", (w, h), bytes(rnd.randrange(256) for _ in range(w * h * 3)))


def shapes(w, h):
    """Hard edges between saturated colours (Lanczos overshoots: exercises the clamping)."""
    img = Image.new("RGB", (w, h), (0, 0, 0))
    px = img.load()
    for y in range(h):
        for x in range(w):
            if (x - w // 3) ** 2 + (y - h // 2) ** 2 < (h // 3) ** 2:
                px[x, y] = (255, 255, 255)
            elif x > 2 * w // 3 and y < h // 2:
                px[x, y] = (255, 0, 32)
            elif (x + y) % 7 == 0:
                px[x, y] = (0, 200, 255)
    return img


def gradient(w, h):
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            px[x, y] = ((x * 255) // (w - 1), (y * 255) // (h - 1), ((x + y) * 7) % 256)
    return img


def main():
    print("Pillow", PIL.__version__)
    os.makedirs(OUT, exist_ok=True)
    sources = {
        "noise_37x23": (noise(37, 23, 1234), [(64, 48), (16, 8), (64, 23), (37, 64), (24, 40), (5, 3)]),
        "shapes_96x64": (shapes(96, 64), [(64, 64), (40, 88), (200, 136), (257, 171)]),
        "gradient_50x70": (gradient(50, 70), [(64, 64), (33, 71), (50, 17)]),
    }
    lines = []
    for name, (img, sizes) in sources.items():
        img.save(os.path.join(OUT, name + ".png"))
        for w, h in sizes:
            out = "%s_to_%dx%d.png" % (name, w, h)
            img.resize((w, h), resample=Image.LANCZOS).save(os.path.join(OUT, out))
            lines.append("%s.png %s %d %d" % (name, out, w, h))
    with open(os.path.join(OUT, "cases.txt"), "w") as f:
        f.write("# source output width height: PIL %s Image.resize((w, h), LANCZOS)\n" % PIL.__version__)
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
