"""A tiny line-chart PNG writer (matplotlib is not installed here): white canvas, axes with
tick labels in a 3x5 pixel font, grid lines, one polyline with dots. Enough to show the
ControlNet's training curve (edge F1 vs step); not a plotting library.
"""
import struct
import zlib

import numpy as np

_FONT = {  # 3x5 glyphs, rows top to bottom, 3 bits each
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111",
    "3": "111001111001111", "4": "101101111001001", "5": "111100111001111",
    "6": "111100111101111", "7": "111001010010010", "8": "111101111101111",
    "9": "111101111001111", ".": "000000000000010", "-": "000000111000000",
    "k": "100101110101101", " ": "000000000000000", "s": "011100010001110",
    "t": "010111010010011", "e": "111100111100111", "p": "111101111100100",
    "d": "001001111101111", "g": "111100101101111", "f": "111100110100100",
}


def _text(img, x, y, s, scale=2, colour=(0, 0, 0)):
    for k, ch in enumerate(s):
        g = _FONT.get(ch, _FONT[" "])
        for r in range(5):
            for c in range(3):
                if g[r * 3 + c] == "1":
                    y0, x0 = y + r * scale, x + (k * 4 + c) * scale
                    img[y0:y0 + scale, x0:x0 + scale] = colour


def _line(img, x0, y0, x1, y1, colour):
    n = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.linspace(x0, x1, n).round().astype(int)
    ys = np.linspace(y0, y1, n).round().astype(int)
    ok = (xs >= 0) & (xs < img.shape[1]) & (ys >= 0) & (ys < img.shape[0])
    img[ys[ok], xs[ok]] = colour
    img[np.clip(ys[ok] + 1, 0, img.shape[0] - 1), xs[ok]] = colour


def _fmt(v):
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def write_png(path, rgb):
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + \
        struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def line_chart(path, xs, ys, ymin=0.0, ymax=1.0, w=640, h=400, xlabel="step", ylabel="edge f1"):
    """Plot ys against xs (x from 0 to max(xs)) and write an RGB PNG to path."""
    img = np.full((h, w, 3), 255, np.uint8)
    L, R, T, B = 60, 20, 20, 40
    xmax = max(max(xs), 1) if len(xs) else 1
    px = lambda x: L + (w - L - R) * x / xmax
    py = lambda y: h - B - (h - T - B) * (y - ymin) / (ymax - ymin)
    for k in range(6):  # grid and tick labels
        yv = ymin + (ymax - ymin) * k / 5
        _line(img, L, py(yv), w - R, py(yv), (225, 225, 225))
        _text(img, 8, int(py(yv)) - 5, _fmt(round(yv, 2)))
        xv = xmax * k / 5
        _line(img, px(xv), T, px(xv), h - B, (225, 225, 225))
        lab = _fmt(round(xv))
        _text(img, min(int(px(xv)) - 8, w - 8 * len(lab) - 2), h - B + 10, lab)
    _text(img, w - R - 8 * len(xlabel), h - 14, xlabel)
    _text(img, L + 6, 4, ylabel)
    _line(img, L, h - B, w - R, h - B, (0, 0, 0))
    _line(img, L, T, L, h - B, (0, 0, 0))
    pts = [(px(x), py(min(max(y, ymin), ymax))) for x, y in zip(xs, ys)]
    for (a, b), (c, d) in zip(pts[:-1], pts[1:]):
        _line(img, a, b, c, d, (30, 80, 200))
    for a, b in pts:
        img[int(b) - 2:int(b) + 3, int(a) - 2:int(a) + 3] = (200, 40, 40)
    write_png(path, img)
