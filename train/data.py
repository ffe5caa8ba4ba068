"""The procedural data set: coloured shapes with captions, and their Canny edge maps.

Every example is a pure function of (seed, index): `example(seed, i, size)` draws a scene from a
small grammar (one or two shapes among SHAPES, colours named by common words, small/large
sizes, positions, plain or coloured background), renders it anti-aliased with signed distance
functions in numpy, and writes its caption ("a small red circle and a blue square on a yellow
background"). `canny()` is OpenCV 4.6's Canny on RGB (per-channel Sobel, strongest channel, integer
direction tests, hysteresis) in numpy; it reproduces every fixture in tests/data/canny/
exactly. `edge_f1()` scores edge agreement with a pixel tolerance.
"""
import numpy as np

COLOURS = {
    "red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220),
    "yellow": (245, 215, 30), "orange": (245, 135, 20), "purple": (130, 40, 170),
    "pink": (245, 135, 195), "brown": (125, 75, 35), "black": (20, 20, 20),
    "white": (245, 245, 245), "gray": (128, 128, 128), "cyan": (40, 205, 225),
}
SHAPES = ("circle", "square", "triangle", "star")
POSITIONS = {  # phrase -> centre as fractions of the image (x, y)
    "on the left": (0.27, 0.5), "on the right": (0.73, 0.5), "at the top": (0.5, 0.27),
    "at the bottom": (0.5, 0.73), "in the center": (0.5, 0.5),
    "in the top left corner": (0.25, 0.25), "in the top right corner": (0.75, 0.25),
    "in the bottom left corner": (0.25, 0.75), "in the bottom right corner": (0.75, 0.75),
}
# Half-extent / image size. A small shape spans 4.5-5.8 latent pixels (of 16): smaller ones
# lose their corners in the autoencoder.
SMALL, LARGE, ANY = (0.14, 0.18), (0.25, 0.32), (0.14, 0.28)
PAIR = (0.15, 0.20)  # each of two shapes, no size word


def words():
    """Every word the caption grammar can produce (for the tokenizer's corpus)."""
    w = {"a", "and", "on", "background", "small", "large"}
    w |= set(COLOURS) | set(SHAPES)
    for p in POSITIONS:
        w |= set(p.split())
    return sorted(w)


def _pick(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _scene(rng):
    """Draw a scene: dict(bg, shapes=[dict(shape, colour, size_word, r, cx, cy, rot)], caption)."""
    names = list(COLOURS)
    bg = "white" if rng.random() < 0.4 else _pick(rng, names)
    n = 1 if rng.random() < 0.6 else 2
    used, shapes = {bg}, []
    for k in range(n):
        colour = _pick(rng, [c for c in names if c not in used])
        used.add(colour)
        sz = _pick(rng, ["small", "large", ""]) if n == 1 else _pick(rng, ["small", ""])
        lo, hi = {"small": SMALL, "large": LARGE, "": ANY if n == 1 else PAIR}[sz]
        shapes.append(dict(shape=_pick(rng, SHAPES), colour=colour, size_word=sz,
                           r=float(rng.uniform(lo, hi)), rot=float(rng.uniform(-0.15, 0.15)),
                           pos=""))
    if n == 1:
        s = shapes[0]
        if s["size_word"] != "large" and rng.random() < 0.5:
            s["pos"] = _pick(rng, list(POSITIONS))
            fx, fy = POSITIONS[s["pos"]]
            s["cx"], s["cy"] = fx + rng.uniform(-0.04, 0.04), fy + rng.uniform(-0.04, 0.04)
        else:
            m = s["r"] + 0.03
            s["cx"], s["cy"] = rng.uniform(m, 1 - m), rng.uniform(m, 1 - m)
    else:  # side by side (first on the left) or stacked (first on top)
        horiz = rng.random() < 0.5
        for k, s in enumerate(shapes):
            m = s["r"] + 0.03
            a = 0.25 + 0.5 * k + rng.uniform(-0.04, 0.04)
            b = rng.uniform(m, 1 - m)
            s["cx"], s["cy"] = (a, b) if horiz else (b, a)
    parts = []
    for s in shapes:
        t = "a " + (s["size_word"] + " " if s["size_word"] else "") + s["colour"] + " " + s["shape"]
        parts.append(t + (" " + s["pos"] if s["pos"] else ""))
    cap = " and ".join(parts)
    if bg != "white" or rng.random() < 0.5:
        cap += " on a " + bg + " background"
    return dict(bg=bg, shapes=shapes, caption=cap)


def _polygon(px, py, verts):
    """Signed distance (pixels, negative inside) from points to a closed polygon."""
    d = np.full(px.shape, np.inf)
    inside = np.zeros(px.shape, bool)
    for (ax, ay), (bx, by) in zip(verts, np.roll(verts, -1, axis=0)):
        ex, ey = bx - ax, by - ay
        t = np.clip(((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey), 0, 1)
        d = np.minimum(d, np.hypot(px - ax - t * ex, py - ay - t * ey))
        straddle = (ay > py) != (by > py)  # then ey != 0
        xcross = ax + (py - ay) * ex / (ey if ey != 0 else 1.0)
        cross = straddle & (px < xcross)
        inside ^= cross
    return np.where(inside, -d, d)


def _sdf(s, px, py, size):
    cx, cy, r, rot = s["cx"] * size, s["cy"] * size, s["r"] * size, s["rot"]
    if s["shape"] == "circle":
        return np.hypot(px - cx, py - cy) - r
    if s["shape"] == "square":
        r *= 0.85  # same visual area class as the circle
        qx, qy = np.abs(px - cx) - r, np.abs(py - cy) - r
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    if s["shape"] == "triangle":
        ang = rot - np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        verts = np.stack([cx + r * np.cos(ang), cy + 0.12 * r + r * np.sin(ang)], 1)
    else:  # five-pointed star, inner radius 0.45
        ang = rot - np.pi / 2 + np.arange(10) * np.pi / 5
        rad = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
        verts = np.stack([cx + rad * np.cos(ang), cy + 0.05 * r + rad * np.sin(ang)], 1)
    return _polygon(px, py, verts)


def render(scene, size):
    """scene -> (size, size, 3) uint8 RGB, anti-aliased by coverage = clamp(0.5 - sdf)."""
    py, px = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    img = np.zeros((size, size, 3)) + np.array(COLOURS[scene["bg"]], np.float64)
    for s in scene["shapes"]:
        a = np.clip(0.5 - _sdf(s, px, py, size), 0, 1)[..., None]
        img = img * (1 - a) + np.array(COLOURS[s["colour"]], np.float64) * a
    return np.round(img).astype(np.uint8)


def example(seed, i, size=128):
    """The i-th example of the data set `seed`: (image uint8 HWC RGB, caption, scene)."""
    sc = _scene(np.random.default_rng([seed, i]))
    return render(sc, size), sc["caption"], sc


ONE_SHAPE_SIZES = ("small", "large", "any")  # what one_shape_size returns for one shape


def one_shape_size(caption):
    """The size word of a one-shape caption ("small", "large", or "any" when it names none);
    None when it names two shapes."""
    if " and " in caption:
        return None
    w = caption.split()[1]
    return w if w in ONE_SHAPE_SIZES[:2] else "any"


def caption(seed, i):
    """The caption of example i without rendering it."""
    return _scene(np.random.default_rng([seed, i]))["caption"]


def batch(seed, start, n, size=128, with_canny=False):
    """Examples start..start+n-1 (see batch_of)."""
    return batch_of(seed, range(start, start + n), size, with_canny)


def batch_of(seed, indices, size=128, with_canny=False):
    """The examples at `indices` as float32 NCHW in [-1, 1], captions, and (optionally) the
    Canny control images as float32 NCHW in [0, 1] (edge map stacked 3 times)."""
    imgs, caps, ctl = [], [], []
    for i in indices:
        im, cap, _ = example(seed, i, size)
        imgs.append(im)
        caps.append(cap)
        if with_canny:
            ctl.append(canny(im))
    x = np.stack(imgs).astype(np.float32).transpose(0, 3, 1, 2) / 127.5 - 1.0
    if not with_canny:
        return x, caps
    c = np.repeat(np.stack(ctl)[:, None].astype(np.float32) / 255.0, 3, axis=1)
    return x, caps, c


# ---------------------------------------------------------------- Canny (OpenCV style)


def _sobel(ch):
    p = np.pad(ch.astype(np.int32), 1, mode="edge")
    sm_v = p[:-2] + 2 * p[1:-1] + p[2:]          # [1 2 1]^T smoothing, rows
    dx = sm_v[:, 2:] - sm_v[:, :-2]
    sm_h = p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]
    dy = sm_h[2:] - sm_h[:-2]
    return dx, dy


def canny(img, low=100, high=200):
    """RGB uint8 (H, W, 3) -> uint8 (H, W) with 255 on edges, following OpenCV 4.6's Canny on
    a 3-channel image (aperture 3, L1 magnitude) as tests/data/GOLDEN.md describes it."""
    if low > high:
        low, high = high, low
    h, w = img.shape[:2]
    grads = [_sobel(img[..., c]) for c in range(img.shape[2])]
    mags = np.stack([np.abs(dx) + np.abs(dy) for dx, dy in grads])
    best = np.argmax(mags, axis=0)  # first channel wins ties
    dx = np.choose(best, [g[0] for g in grads])
    dy = np.choose(best, [g[1] for g in grads])
    m = np.choose(best, mags)
    mp = np.pad(m, 1)  # magnitudes outside the image count as 0
    nb = lambda oy, ox: mp[1 + oy:1 + oy + h, 1 + ox:1 + ox + w]
    ax, ay = np.abs(dx).astype(np.int64), np.abs(dy).astype(np.int64)
    TG22 = 13573
    horiz = (ay << 15) < ax * TG22
    vert = (ay << 15) > ax * TG22 + (ax << 16)
    same = (dx ^ dy) >= 0
    keep_h = (m > nb(0, -1)) & (m >= nb(0, 1))
    keep_v = (m > nb(-1, 0)) & (m >= nb(1, 0))
    keep_d1 = (m > nb(-1, -1)) & (m > nb(1, 1))
    keep_d2 = (m > nb(-1, 1)) & (m > nb(1, -1))
    keep = np.where(horiz, keep_h, np.where(vert, keep_v, np.where(same, keep_d1, keep_d2)))
    cand = keep & (m > low)
    edges = cand & (m > high)
    while True:  # hysteresis: grow strong pixels through 8-connected candidates
        p = np.pad(edges, 1)
        grown = np.zeros_like(edges)
        for oy in (-1, 0, 1):
            for ox in (-1, 0, 1):
                grown |= p[1 + oy:1 + oy + h, 1 + ox:1 + ox + w]
        grown &= cand
        if (grown == edges).all():
            break
        edges = grown
    return edges.astype(np.uint8) * 255


def edge_f1(pred, ref, tol=2):
    """F1 of two binary edge maps where a pixel matches if the other map has an edge within
    `tol` pixels (Chebyshev distance). pred, ref: (H, W) bool/uint8."""
    pred, ref = pred > 0, ref > 0

    def dilate(e):
        h, w = e.shape
        p = np.pad(e, tol)
        out = np.zeros_like(e)
        for oy in range(-tol, tol + 1):
            for ox in range(-tol, tol + 1):
                out |= p[tol + oy:tol + oy + h, tol + ox:tol + ox + w]
        return out

    if pred.sum() == 0 or ref.sum() == 0:
        return 0.0
    prec = (pred & dilate(ref)).sum() / pred.sum()
    rec = (ref & dilate(pred)).sum() / ref.sum()
    return 0.0 if prec + rec == 0 else float(2 * prec * rec / (prec + rec))
