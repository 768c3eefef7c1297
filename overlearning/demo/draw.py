"""Drawing for the generated demo data: textured shapes, animals, vehicles and people.

Everything is drawn with numpy on small float canvases (H x W x 3, values 0..1). A shape is
described in its own normalised coordinates (u down, v right, both -1..1 over its box), so
its look (colours, pattern, proportions) stays the same wherever and however large it is
drawn: a model can learn to recognise the same object across frames, and the same person
across cameras, while positions, scale, pose and lighting change.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

PATTERNS = ("solid", "hstripes", "vstripes", "checks", "dots", "diagonal", "halves")


@dataclass(frozen=True)
class Look:
    """Colours and surface pattern of one object (or one garment)."""

    primary: tuple[float, float, float]
    secondary: tuple[float, float, float]
    pattern: str
    period: float  # pattern repeat, in normalised shape units


def random_colour(rng: np.random.Generator, saturation: tuple[float, float] = (0.45, 1.0),
                  value: tuple[float, float] = (0.35, 0.95)) -> tuple[float, float, float]:
    rgb = colorsys.hsv_to_rgb(rng.uniform(0, 1), rng.uniform(*saturation), rng.uniform(*value))
    return (float(rgb[0]), float(rgb[1]), float(rgb[2]))


def random_look(rng: np.random.Generator, patterns: tuple[str, ...] = PATTERNS) -> Look:
    primary = random_colour(rng)
    secondary = random_colour(rng)
    # Keep the two colours apart so a pattern is actually visible.
    if float(np.abs(np.subtract(primary, secondary)).sum()) < 0.5:
        secondary = tuple(float(1.0 - c) for c in primary)  # type: ignore[assignment]
    return Look(primary, secondary, str(rng.choice(list(patterns))), float(rng.uniform(0.25, 0.6)))


def pattern_weight(look: Look, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """0 where the primary colour shows, 1 where the secondary does."""
    p = look.period
    if look.pattern == "hstripes":
        return (np.floor(u / p) % 2).astype(np.float32)
    if look.pattern == "vstripes":
        return (np.floor(v / p) % 2).astype(np.float32)
    if look.pattern == "checks":
        return ((np.floor(u / p) + np.floor(v / p)) % 2).astype(np.float32)
    if look.pattern == "dots":
        du = (u / p) % 1.0 - 0.5
        dv = (v / p) % 1.0 - 0.5
        return (du * du + dv * dv < 0.09).astype(np.float32)
    if look.pattern == "diagonal":
        return (np.floor((u + v) / p) % 2).astype(np.float32)
    if look.pattern == "halves":
        return (v > 0).astype(np.float32)
    return np.zeros_like(u, dtype=np.float32)


def paint(canvas: np.ndarray, mask: np.ndarray, look: Look, u: np.ndarray, v: np.ndarray,
          shading: float = 0.25) -> None:
    """Fill ``mask`` with the look's pattern, lit from above (darker towards the bottom)."""
    if not mask.any():
        return
    w = pattern_weight(look, u[mask], v[mask])[:, None]
    colour = (1 - w) * np.asarray(look.primary, np.float32) + w * np.asarray(look.secondary,
                                                                            np.float32)
    light = 1.0 + shading * (-np.clip(u[mask], -1, 1) * 0.5)[:, None]
    canvas[mask] = np.clip(colour * light, 0, 1)


def fill(canvas: np.ndarray, mask: np.ndarray, colour: tuple[float, float, float]) -> None:
    canvas[mask] = colour


def grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy + 0.5, xx + 0.5


def polygon(shape: tuple[int, int], points: list[tuple[float, float]]) -> np.ndarray:
    """Filled polygon from (x, y) pixel points, as a bool mask."""
    out = np.zeros(shape, np.uint8)
    pts = np.round(np.asarray(points, np.float64) * 16).astype(np.int32)
    cv2.fillPoly(out, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return out.astype(bool)


def background(rng: np.random.Generator, height: int, width: int,
               tint: tuple[float, float, float] | None = None) -> np.ndarray:
    """A plausible scene: a vertical gradient (sky/floor), soft blobs and sensor noise."""
    top = np.asarray(tint if tint is not None else random_colour(rng, (0.1, 0.5), (0.5, 0.9)))
    bottom = np.asarray(random_colour(rng, (0.1, 0.5), (0.25, 0.7)))
    yy, xx = grid(height, width)
    t = (yy / height)[..., None]
    canvas = (1 - t) * top + t * bottom
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.15, 0.4) * min(height, width)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))[..., None]
        canvas = canvas * (1 - 0.35 * blob) + 0.35 * blob * np.asarray(random_colour(rng))
    ripple = 0.04 * np.sin(xx / rng.uniform(3, 9) + rng.uniform(0, 6.28)) * np.sin(
        yy / rng.uniform(3, 9))
    canvas = canvas + ripple[..., None]
    return np.clip(canvas, 0, 1).astype(np.float32)


def finish(canvas: np.ndarray, rng: np.random.Generator, gain: np.ndarray | None = None,
           noise: float = 0.02, blur: float = 0.0) -> np.ndarray:
    """Camera response: colour cast / exposure, optical blur, sensor noise; to uint8."""
    image = canvas * (gain if gain is not None else 1.0)
    if blur > 0:
        image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), blur)
    image = image + rng.normal(0.0, noise, image.shape)
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


# ---- non-person objects -------------------------------------------------------------------


def _ell(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
    return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _rect(u: np.ndarray, v: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)


def _tri(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float],
         c: tuple[float, float]) -> np.ndarray:
    def side(p: tuple[float, float], q: tuple[float, float]) -> np.ndarray:
        return (q[1] - p[1]) * (u - p[0]) - (q[0] - p[0]) * (v - p[1])
    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    return ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))


def quadruped(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    swing = 0.12 * np.sin(phase)
    body = _ell(u, v, -0.05, -0.05, 0.42, 0.62)
    head = _ell(u, v, -0.5, 0.68, 0.3, 0.26)
    ear = _tri(u, v, (-0.95, 0.6), (-0.7, 0.5), (-0.7, 0.75))
    tail = _rect(u, v, -0.3, -0.2, -0.95, -0.6)
    legs = np.zeros_like(body)
    for centre, sign in ((-0.45, 1), (-0.2, -1), (0.2, 1), (0.45, -1)):
        shift = sign * swing * (u - 0.2)
        legs |= (u > 0.2) & (u <= 1.0) & (np.abs(v - centre - shift) < 0.08)
    return body | head | ear | tail | legs


def bird(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    lift = 0.35 * np.sin(phase)
    body = _ell(u, v, 0.1, -0.05, 0.38, 0.6)
    head = _ell(u, v, -0.35, 0.6, 0.25, 0.22)
    beak = _tri(u, v, (-0.4, 0.8), (-0.28, 0.8), (-0.33, 1.0))
    wing = _tri(u, v, (0.0, -0.3), (0.0, 0.25), (-0.9 + lift, -0.2))
    tail = _tri(u, v, (0.05, -0.6), (0.35, -0.6), (0.3, -1.0))
    feet = _rect(u, v, 0.45, 1.0, -0.08, 0.0) | _rect(u, v, 0.45, 1.0, 0.12, 0.2)
    return body | head | beak | wing | tail | feet


def fish(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    wag = 0.15 * np.sin(phase)
    body = _ell(u, v, 0.0, 0.12, 0.55, 0.82)
    tail = _tri(u, v, (0.0 + wag, -0.55), (-0.75 + wag, -1.0), (0.75 + wag, -1.0))
    fin = _tri(u, v, (-0.45, -0.1), (-0.45, 0.35), (-1.0, -0.05))
    return body | tail | fin


def vehicle(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    body = _rect(u, v, -0.35, 0.45, -1.0, 1.0)
    cabin = _rect(u, v, -0.95, -0.3, -0.45, 0.5)
    wheels = _ell(u, v, 0.55, -0.6, 0.42, 0.2) | _ell(u, v, 0.55, 0.6, 0.42, 0.2)
    return body | cabin | wheels


def airplane(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    fuselage = _ell(u, v, 0.0, 0.0, 0.22, 1.0)
    wings = _tri(u, v, (-0.05, -0.3), (-0.05, 0.3), (0.95, -0.15))
    wings |= _tri(u, v, (0.05, -0.3), (0.05, 0.3), (-0.95, -0.15))
    tail = _tri(u, v, (0.0, -0.95), (0.0, -0.6), (-0.75, -0.95))
    return fuselage | wings | tail


def boat(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    hull = _rect(u, v, 0.35, 0.95, -1.0, 1.0) & (v - 1.0 <= -(u - 0.35) * 0.6) & (
        v + 1.0 >= (u - 0.35) * 0.6)
    mast = _rect(u, v, -1.0, 0.35, -0.05, 0.05)
    sail = _tri(u, v, (-0.9, 0.08), (0.25, 0.08), (0.25, 0.75))
    return hull | mast | sail


def board(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    return _ell(u, v, 0.0, 0.0, 1.0, 1.0) & (np.abs(u) < 0.55) | _rect(u, v, -0.35, 0.35,
                                                                        -0.8, 0.8)


def disc(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    return _ell(u, v, 0.0, 0.0, 0.6, 1.0)


def racket(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    head = _ell(u, v, -0.35, 0.0, 0.62, 0.75) & ~_ell(u, v, -0.35, 0.0, 0.42, 0.52)
    strings = _ell(u, v, -0.35, 0.0, 0.42, 0.52) & (
        (np.floor((u + 2) / 0.12) % 2 == 0) | (np.floor((v + 2) / 0.14) % 2 == 0))
    handle = _rect(u, v, 0.25, 1.0, -0.12, 0.12)
    return head | strings | handle


def snake(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    centre = 0.55 * np.sin(3.0 * v + phase)
    return (np.abs(u - centre) < 0.22) & (np.abs(v) <= 0.95) | _ell(u, v, 0.55 * np.sin(
        3.0 * 0.95 + phase), 0.95, 0.3, 0.12)


def blob(u: np.ndarray, v: np.ndarray, phase: float) -> np.ndarray:
    return np.abs(u) ** 2.5 + np.abs(v) ** 2.5 <= 1.0


SHAPES = {
    "quadruped": quadruped, "bird": bird, "fish": fish, "vehicle": vehicle,
    "airplane": airplane, "boat": boat, "board": board, "disc": disc, "racket": racket,
    "snake": snake, "blob": blob,
}


# ---- people -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """How one person looks, the same under every camera."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    shirt: Look
    trousers: tuple[float, float, float]
    shoes: tuple[float, float, float]
    short_sleeves: bool
    shorts: bool
    long_hair: bool
    bag: tuple[float, float, float] | None
    build: float  # width relative to an average figure


SKIN_TONES = ((0.96, 0.80, 0.69), (0.89, 0.67, 0.52), (0.76, 0.54, 0.38), (0.55, 0.37, 0.25),
              (0.36, 0.24, 0.16))
HAIR_COLOURS = ((0.08, 0.06, 0.05), (0.3, 0.18, 0.1), (0.55, 0.4, 0.2), (0.85, 0.75, 0.5),
                (0.6, 0.6, 0.6))


def random_identity(rng: np.random.Generator) -> Identity:
    shirt = random_look(rng, ("solid", "solid", "hstripes", "vstripes", "checks", "halves"))
    return Identity(
        skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
        hair=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
        shirt=Look(shirt.primary, shirt.secondary, shirt.pattern, shirt.period * 0.6),
        trousers=random_colour(rng, (0.1, 0.8), (0.15, 0.8)),
        shoes=random_colour(rng, (0.0, 0.4), (0.05, 0.4)),
        short_sleeves=bool(rng.random() < 0.4),
        shorts=bool(rng.random() < 0.25),
        long_hair=bool(rng.random() < 0.35),
        bag=random_colour(rng) if rng.random() < 0.35 else None,
        build=float(rng.uniform(0.85, 1.15)),
    )


def draw_person(canvas: np.ndarray, yy: np.ndarray, xx: np.ndarray, person: Identity,
                top: float, centre_x: float, height: float, stride: float = 0.0,
                facing: int = 1) -> np.ndarray:
    """Paint a standing/walking figure whose head top is at ``top``; return its silhouette.

    ``stride`` (-1..1) spreads the legs as in a walking step; ``facing`` (+1/-1) mirrors
    asymmetric details (the bag) as when a person is seen from the other side.
    """
    h = height
    w = 0.36 * h * person.build
    u = (yy - top) / h                   # 0 at the head top, 1 at the soles
    v = (xx - centre_x) / w * facing     # 0 on the body axis, +-0.5 at the shoulders
    shape = canvas.shape[:2]

    head = ((u - 0.085) / 0.075) ** 2 + (v / 0.2) ** 2 <= 1.0
    hair = head & (u < 0.06)
    if person.long_hair:
        hair |= (u >= 0.04) & (u < 0.24) & (np.abs(v) < 0.24) & (np.abs(v) > 0.1)
    neck = (u >= 0.15) & (u < 0.19) & (np.abs(v) < 0.08)
    torso = (u >= 0.18) & (u < 0.56) & (np.abs(v) <= 0.46 - 0.12 * (u - 0.18) / 0.38)
    arm_band = (u >= 0.19) & (u < 0.53)
    arms = arm_band & (np.abs(v) > 0.42) & (np.abs(v) < 0.58 - 0.08 * (u - 0.19))
    hands = (u >= 0.5) & (u < 0.56) & (np.abs(v) > 0.4) & (np.abs(v) < 0.52)
    sleeve_end = 0.32 if person.short_sleeves else 0.5
    # Legs are quads from the hip to the ankle, the feet swinging apart with the stride.
    legs = np.zeros(shape, bool)
    feet = np.zeros(shape, bool)
    for side in (-1, 1):
        hip_x = centre_x + side * 0.17 * w
        foot_x = hip_x + side * stride * 0.2 * w
        half = 0.13 * w
        pts = [(hip_x - half, top + 0.55 * h), (hip_x + half, top + 0.55 * h),
               (foot_x + half * 0.8, top + 0.955 * h), (foot_x - half * 0.8, top + 0.955 * h)]
        legs |= polygon(shape, pts)
        feet |= polygon(shape, [(foot_x - half, top + 0.95 * h), (foot_x + half * 1.6,
                                top + 0.95 * h), (foot_x + half * 1.6, top + h),
                                (foot_x - half, top + h)])
    bag = np.zeros(shape, bool)
    if person.bag is not None:
        bag = (u >= 0.36) & (u < 0.6) & (v > 0.5) & (v < 0.78)

    fill(canvas, legs, person.trousers)
    if person.shorts:
        fill(canvas, legs & (u > 0.72), person.skin)
    fill(canvas, feet, person.shoes)
    fill(canvas, arms | hands, person.skin)
    paint(canvas, arms & (u < sleeve_end), person.shirt, (u - 0.18) * 4, v * 2)
    paint(canvas, torso, person.shirt, (u - 0.18) * 4, v * 2, shading=0.15)
    fill(canvas, neck | head, person.skin)
    fill(canvas, hair, person.hair)
    if person.bag is not None:
        fill(canvas, bag, person.bag)
    return head | hair | neck | torso | arms | hands | legs | feet | bag
