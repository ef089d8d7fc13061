"""Procedural scenes and captions: the training data of the embedded default model.

One coloured shape on a plain background, each with a caption. The rules here (palette, shapes,
positions, sizes, caption templates, defaults, held-out combinations, rough drawings) are mirrored
in scripts/scenes.ts, which the evaluation (bench/model-quality.ts) uses: keep the two in sync.

Rendering is by signed distance (pixels), anti-aliased over one pixel: alpha = clip(0.5 - d, 0, 1).
"""
from __future__ import annotations

import math

import numpy as np

SIZE = 256

# name -> RGB. Chosen so that every pair is at least ~80 apart in RGB.
PALETTE = [
    ("red", (220, 40, 40)),
    ("orange", (245, 140, 20)),
    ("yellow", (245, 220, 40)),
    ("green", (40, 170, 70)),
    ("cyan", (40, 200, 220)),
    ("blue", (40, 80, 220)),
    ("purple", (140, 60, 190)),
    ("pink", (245, 140, 190)),
    ("white", (245, 245, 245)),
    ("black", (25, 25, 25)),
]
COLOURS = [n for n, _ in PALETTE]
RGB = {n: c for n, c in PALETTE}

SHAPES = ["circle", "square", "triangle", "star", "ring"]

# name -> centre as a fraction of the canvas; phrases used in captions.
POSITIONS = [
    ("top left", (0.22, 0.22), ["at the top left", "in the top left corner", "at the upper left"]),
    ("top", (0.5, 0.22), ["at the top", "at the top center"]),
    ("top right", (0.78, 0.22), ["at the top right", "in the top right corner", "at the upper right"]),
    ("left", (0.22, 0.5), ["on the left", "at the left"]),
    ("center", (0.5, 0.5), ["in the center", "in the middle", "at the center"]),
    ("right", (0.78, 0.5), ["on the right", "at the right"]),
    ("bottom left", (0.22, 0.78), ["at the bottom left", "in the bottom left corner", "at the lower left"]),
    ("bottom", (0.5, 0.78), ["at the bottom", "at the bottom center"]),
    ("bottom right", (0.78, 0.78), ["at the bottom right", "in the bottom right corner", "at the lower right"]),
]
POSITION_NAMES = [p[0] for p in POSITIONS]

# size name -> radius in pixels (at 256x256); "medium" has no word in captions.
SIZES = [("small", 26.0, ["small"]), ("medium", 38.0, [""]), ("big", 50.0, ["big", "large"])]

TEMPLATES = [
    "{A} {thing} {pos} on {a} {bg} background",
    "{thing} {pos}, {bg} background",
    "{A} {bg} background with {a} {thing} {pos}",
]
# Without a position phrase the shape is in the center; without a background phrase the background
# is white (black for a white shape); without a size word the shape is medium.
DEFAULT_POSITION = "center"


def default_background(colour: str) -> str:
    return "black" if colour == "white" else "white"


def is_held_out(colour: str, shape: str, position: str) -> bool:
    """(colour, shape, position) combinations never used in training: the evaluation's captions.

    For every pair of the three, some combinations with it remain in training.
    """
    c, s, p = COLOURS.index(colour), SHAPES.index(shape), POSITION_NAMES.index(position)
    return (3 * c + 7 * s + 11 * p) % 5 == 0


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def caption(scene: dict, rng: np.random.Generator, allow_omit: bool = True) -> str:
    """A caption of the scene from the templates. With allow_omit, phrases that name a default
    (center position, default background) are sometimes left out."""
    size_words = next(s[2] for s in SIZES if s[0] == scene["size"])
    size = size_words[rng.integers(len(size_words))]
    thing = (size + " " if size else "") + scene["colour"] + " " + scene["shape"]
    phrases = next(p[2] for p in POSITIONS if p[0] == scene["position"])
    pos = phrases[rng.integers(len(phrases))]
    if allow_omit and scene["position"] == DEFAULT_POSITION and rng.random() < 0.5:
        pos = ""
    if allow_omit and scene["bg"] == default_background(scene["colour"]) and rng.random() < 0.5:
        text = f"{article(thing)} {thing} {pos}"
    else:
        t = TEMPLATES[rng.integers(len(TEMPLATES))]
        first = scene["bg"] if t.startswith("{A} {bg}") else thing
        text = t.format(A=article(first), a=article(thing), thing=thing, pos=pos, bg=scene["bg"])
    return " ".join(text.split()).replace(" ,", ",")


def region_of(cx: float, cy: float, size: int = SIZE) -> str:
    """3x3 region name of a point (the evaluation's position rule)."""
    col = 0 if cx < size / 3 else (2 if cx >= 2 * size / 3 else 1)
    row = 0 if cy < size / 3 else (2 if cy >= 2 * size / 3 else 1)
    return POSITION_NAMES[row * 3 + col]


def size_of(r: float) -> str:
    return "small" if r < 32 else ("medium" if r < 44 else "big")


# --------------------------------------------------------------------------------------------
# Scenes

def canonical_scene(rng: np.random.Generator, held_out: bool | None = False) -> dict:
    """A scene whose caption determines it (up to a few pixels of jitter).

    held_out: False = only training combinations, True = only held-out ones, None = any.
    """
    while True:
        colour = COLOURS[rng.integers(len(COLOURS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        position = POSITION_NAMES[rng.integers(len(POSITION_NAMES))]
        if held_out is None or is_held_out(colour, shape, position) == held_out:
            break
    bg = colour
    while bg == colour:
        bg = COLOURS[rng.integers(len(COLOURS))]
    size_name, r, _ = SIZES[rng.integers(len(SIZES))]
    fx, fy = next(p[1] for p in POSITIONS if p[0] == position)
    return {
        "colour": colour, "shape": shape, "position": position, "bg": bg, "size": size_name,
        "cx": fx * SIZE + rng.uniform(-6, 6), "cy": fy * SIZE + rng.uniform(-6, 6),
        "r": r + rng.uniform(-3, 3), "rot": 0.0,
    }


def free_scene(rng: np.random.Generator, held_out: bool | None = False) -> dict:
    """Any position and size (as a drawing might have); the caption names the nearest region/size."""
    while True:
        colour = COLOURS[rng.integers(len(COLOURS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        r = rng.uniform(20, 60)
        cx = rng.uniform(r + 2, SIZE - r - 2)
        cy = rng.uniform(r + 2, SIZE - r - 2)
        position = region_of(cx, cy)
        if held_out is None or is_held_out(colour, shape, position) == held_out:
            break
    bg = colour
    while bg == colour:
        bg = COLOURS[rng.integers(len(COLOURS))]
    return {"colour": colour, "shape": shape, "position": position, "bg": bg, "size": size_of(r),
            "cx": cx, "cy": cy, "r": r, "rot": 0.0}


# --------------------------------------------------------------------------------------------
# Signed distances (negative inside), in pixels

def _polygon(shape: str, r: float) -> np.ndarray:
    if shape == "triangle":
        R = 1.15 * r
        ang = [-90, 30, 150]
        return np.array([[R * math.cos(math.radians(a)), R * math.sin(math.radians(a))] for a in ang])
    if shape == "star":
        R, Ri = 1.15 * r, 0.5 * 1.15 * r
        pts = []
        for k in range(10):
            a = math.radians(-90 + 36 * k)
            rr = R if k % 2 == 0 else Ri
            pts.append([rr * math.cos(a), rr * math.sin(a)])
        return np.array(pts)
    raise ValueError(shape)


def _polygon_sdf(px: np.ndarray, py: np.ndarray, v: np.ndarray) -> np.ndarray:
    d2 = np.full(px.shape, np.inf)
    inside = np.zeros(px.shape, dtype=bool)
    n = len(v)
    for i in range(n):
        ax, ay = v[i]
        bx, by = v[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        wx, wy = px - ax, py - ay
        t = np.clip((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
        dx, dy = wx - ex * t, wy - ey * t
        d2 = np.minimum(d2, dx * dx + dy * dy)
        # crossing number
        c1 = (ay <= py) & (py < by)
        c2 = (by <= py) & (py < ay)
        xcross = ax + (py - ay) * ex / (ey if ey != 0 else 1e-12)
        inside ^= (c1 | c2) & (px < xcross)
    d = np.sqrt(d2)
    return np.where(inside, -d, d)


def shape_sdf(shape: str, cx: float, cy: float, r: float, rot: float, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    px, py = X - cx, Y - cy
    if rot:
        c, s = math.cos(rot), math.sin(rot)
        px, py = c * px + s * py, -s * px + c * py
    if shape == "circle":
        return np.sqrt(px * px + py * py) - r
    if shape == "ring":
        return np.abs(np.sqrt(px * px + py * py) - 0.775 * r) - 0.225 * r
    if shape == "square":
        h = 0.88 * r
        qx, qy = np.abs(px) - h, np.abs(py) - h
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0)
    return _polygon_sdf(px, py, _polygon(shape, r))


def grid(x0: int = 0, y0: int = 0, w: int = SIZE, h: int = SIZE):
    ys, xs = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
    return xs + 0.5, ys + 0.5


def render(scene: dict, window=(0, 0, SIZE, SIZE)) -> np.ndarray:
    """Clean render, float32 HxWx3 in [0, 255]."""
    X, Y = grid(*window)
    d = shape_sdf(scene["shape"], scene["cx"], scene["cy"], scene["r"], scene["rot"], X, Y)
    a = np.clip(0.5 - d, 0, 1)[..., None]
    fg = np.array(RGB[scene["colour"]], np.float32)
    bg = np.array(RGB[scene["bg"]], np.float32)
    return bg * (1 - a) + fg * a


def rough_params(scene: dict, rng: np.random.Generator) -> dict:
    """Random choices that turn a scene into a rough drawing of it."""
    return {
        "wobble": [(k, rng.uniform(0, 0.035), rng.uniform(0, 2 * math.pi)) for k in range(2, 6)],
        "rot": rng.uniform(-0.2, 0.2) if scene["shape"] != "circle" and scene["shape"] != "ring" else 0.0,
        "fg": np.clip(np.array(RGB[scene["colour"]]) + rng.uniform(-30, 30, 3), 0, 255),
        "bg": np.clip(np.array(RGB[scene["bg"]]) + rng.uniform(-20, 20, 3), 0, 255),
        "grad": rng.uniform(-12, 12, 2),
        "outline": rng.random() < 0.4,
        "noise_seed": int(rng.integers(1 << 31)),
    }


def rough_sdf(scene: dict, p: dict, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    r = scene["r"]
    d = shape_sdf(scene["shape"], scene["cx"], scene["cy"], r, p["rot"], X, Y)
    theta = np.arctan2(Y - scene["cy"], X - scene["cx"])
    wob = sum(a * np.sin(k * theta + ph) for k, a, ph in p["wobble"])
    return d - r * wob


def render_rough(scene: dict, p: dict, window=(0, 0, SIZE, SIZE)) -> tuple[np.ndarray, np.ndarray]:
    """A rough drawing of the scene: wobbly outline, off-palette colours, shading and pixel noise.

    Returns (image float32 HxWx3 in [0, 255], foreground mask bool HxW).
    """
    X, Y = grid(*window)
    d = rough_sdf(scene, p, X, Y)
    a = np.clip(0.5 - d, 0, 1)[..., None]
    fg, bg = p["fg"].astype(np.float32), p["bg"].astype(np.float32)
    img = bg * (1 - a) + fg * a
    if p["outline"]:
        o = np.clip(2.0 - np.abs(d + 1.0), 0, 1)[..., None]
        img = img * (1 - o) + (fg * 0.55) * o
    gx, gy = p["grad"]
    img = img + (gx * (X / SIZE - 0.5) + gy * (Y / SIZE - 0.5))[..., None]
    noise = np.random.default_rng(p["noise_seed"]).normal(0, 6, img.shape)
    img = np.clip(img + noise, 0, 255).astype(np.float32)
    return img, d < 0
