"""Prompt adherence of generated images, measured the simple way the issue asks for.

`classify(img)` reads an RGB image of one shape on a background: the background colour is the
commonest colour name along the border; the foreground is the largest connected region of pixels
whose nearest colour name is not the background's (after a 3x3 opening that drops speckles: stray
blobs are not the shape); its colour is the commonest name inside it (its rim, blended with the
background, left out), and its shape comes from two measures of the region: extent
(area / bounding-box area: square ~1, circle ~0.79, triangle ~0.5, star ~0.4) and solidity
(area / convex-hull area: the star's is ~0.6, the other shapes' ~1). `adherence()` generates images for single-shape captions of the training grammar
with fixed seeds (train/sample.py) and reports the fractions right. A reference for the C
engine's adherence tests and for judging a training run; not a general shape recogniser.
"""
import numpy as np

import data

_NAMES = list(data.COLOURS)
_RGB = np.array([data.COLOURS[n] for n in _NAMES], np.float64)


def colour_names(pixels):
    """(N, 3) RGB -> (N,) index of the nearest named colour."""
    d = ((pixels[:, None, :].astype(np.float64) - _RGB[None]) ** 2).sum(-1)
    return d.argmin(1)


def _hull_area(pts):
    """Area of the convex hull of integer points (N, 2) (Andrew's monotone chain)."""
    pts = np.unique(pts, axis=0)
    if len(pts) < 3:
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def half(seq):
        h = []
        for p in seq:
            while len(h) >= 2 and np.cross(h[-1] - h[-2], p - h[-2]) <= 0:
                h.pop()
            h.append(p)
        return h

    hull = np.array(half(pts)[:-1] + half(pts[::-1])[:-1], np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def _shift_all(m, fn, init):
    p = np.pad(m, 1, constant_values=init)
    out = np.full_like(m, init)
    for dy in range(3):
        for dx in range(3):
            out = fn(out, p[dy:dy + m.shape[0], dx:dx + m.shape[1]])
    return out


def _open(m):
    """Morphological opening with a 3x3 square: drops speckles of sampling noise."""
    return _shift_all(_shift_all(m, np.logical_and, True), np.logical_or, False)


def _largest_component(m):
    """The largest 8-connected component of the mask m (stray blobs of sampling or decoder
    artefacts are not the shape)."""
    h, w = m.shape
    label = np.zeros((h, w), np.int32)
    best, best_n, cur = 0, 0, 0
    for y0, x0 in zip(*np.nonzero(m)):
        if label[y0, x0]:
            continue
        cur += 1
        label[y0, x0] = cur
        stack, n = [(y0, x0)], 0
        while stack:
            y, x = stack.pop()
            n += 1
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    if m[yy, xx] and not label[yy, xx]:
                        label[yy, xx] = cur
                        stack.append((yy, xx))
        if n > best_n:
            best, best_n = cur, n
    return label == best


def classify(img):
    """RGB uint8 (H, W, 3) -> dict(bg, colour, shape, extent, solidity); colour/shape None
    when no foreground is found."""
    h, w, _ = img.shape
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.bincount(colour_names(border), minlength=len(_NAMES)).argmax()
    far = _open(colour_names(img.reshape(-1, 3)).reshape(h, w) != bg)
    out = dict(bg=_NAMES[bg], colour=None, shape=None, extent=0.0, solidity=0.0)
    if far.sum() < 12:
        return out
    far = _largest_component(far)
    # The colour from the shape's inside: its anti-aliased rim blends into the background.
    inner = _shift_all(far, np.logical_and, True)
    pick = inner if inner.sum() >= 4 else far
    out["colour"] = _NAMES[np.bincount(colour_names(img[pick]), minlength=len(_NAMES)).argmax()]
    ys, xs = np.nonzero(far)
    area = float(far.sum())
    # Corner pixels of each mask pixel, so the hull covers the pixels' full area.
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    extent = area / ((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    solidity = area / max(_hull_area(corners), 1.0)
    if extent > 0.88:
        shape = "square"
    elif solidity < 0.8:
        shape = "star"
    elif extent > 0.66:
        shape = "circle"
    else:
        shape = "triangle"
    out.update(shape=shape, extent=round(float(extent), 3), solidity=round(float(solidity), 3))
    return out


def single_shape_captions(n, seed=4242):
    """n (caption, scene) pairs of the grammar with exactly one shape, from a held-aside seed."""
    out, i = [], 0
    while len(out) < n:
        sc = data._scene(np.random.default_rng([seed, i]))
        if len(sc["shapes"]) == 1:
            out.append((sc["caption"], sc))
        i += 1
    return out


def score(img, scene, c=None):
    """Right or not, per key; c: classify(img) if already known."""
    c = classify(img) if c is None else c
    s = scene["shapes"][0]
    return dict(colour=c["colour"] == s["colour"], shape=c["shape"] == s["shape"],
                bg=c["bg"] == scene["bg"])


class Tally:
    """Adherence counts over images of single-shape scenes: the fractions right, and where
    the shape goes wrong (by size word and by shape: what was drawn instead)."""

    def __init__(self):
        self.n, self.right = 0, dict(colour=0, shape=0, bg=0)
        self.by_size, self.drawn = {}, {}  # size word -> [right, n]; shape -> {drawn: n}

    def add(self, img, scene):
        c = classify(img)
        ok, got = score(img, scene, c), c["shape"] or "nothing"  # no foreground found
        self.n += 1
        for key, v in ok.items():
            self.right[key] += v
        s = scene["shapes"][0]
        r = self.by_size.setdefault(data.one_shape_size(scene["caption"]), [0, 0])
        r[0], r[1] = r[0] + ok["shape"], r[1] + 1
        d = self.drawn.setdefault(s["shape"], {})
        d[got] = d.get(got, 0) + 1

    def fractions(self):
        return {k: v / max(self.n, 1) for k, v in self.right.items()}

    def shape_report(self):
        """e.g. 'shape right by size: any 9/14, large 12/18, small 3/16; drawn as: square ->
        circle 12, square 7; ...'"""
        size = ", ".join(f"{w} {r}/{n}" for w, (r, n) in sorted(self.by_size.items()))
        drawn = "; ".join(f"{s} -> " + ", ".join(f"{g} {k}" for g, k in sorted(d.items()))
                          for s, d in sorted(self.drawn.items()))
        return f"shape right by size: {size}; drawn as: {drawn}"


def adherence(parts, n=48, cfg=5.0, steps=20, size=128, control=False, tally=None):
    """Generate n images (seeds 0..n-1) for single-shape captions; fractions right. tally: a
    Tally to count into (for its shape report)."""
    import sample
    tally = Tally() if tally is None else tally
    for k, (cap, sc) in enumerate(single_shape_captions(n)):
        ctl = None
        if control:
            ctl = np.repeat(data.canny(data.render(sc, size))[..., None], 3, 2)
        img = sample.generate(parts, cap, seed=k, steps=steps, cfg=cfg, width=size,
                              height=size, control=ctl)
        tally.add(img, sc)
    return tally.fractions()


if __name__ == "__main__":
    import argparse
    import json

    import torch

    import export
    ap = argparse.ArgumentParser(description="prompt adherence of an exported model")
    ap.add_argument("--model", required=True)
    ap.add_argument("-n", type=int, default=48)
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 5.0])
    a = ap.parse_args()
    torch.set_num_threads(1)
    parts = export.load_export(a.model)
    for cfg in a.cfg:
        t = Tally()
        print(json.dumps(dict(cfg=cfg, **adherence(parts, a.n, cfg, tally=t))), flush=True)
        print(t.shape_report(), flush=True)
