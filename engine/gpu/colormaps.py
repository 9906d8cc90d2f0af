"""Colormaps: the one table of control points, sampled on the CPU and compiled into the shaders.

Each map is a list of sRGB colours at evenly spaced t in [0, 1], interpolated linearly in sRGB.
`sample()` is the CPU side (UI legend, tests); `glsl_block()` turns the same table into GLSL
constants that engine.gpu.programs injects as the virtual include "gen/colormaps.glsl", which
shaders/lib/colormap.glsl reads.  Add a map here and both sides have it; shaders select it by
`index(name)`.
"""

from __future__ import annotations

import numpy as np

# Harley 2015: "a variation on the rainbow palette, making use of a wide range of hues and
# saturations ... it also uses a linear value curve".  Designed in CIE LCh: lightness L* rises
# linearly from 10 to 97 while the hue sweeps navy -> blue -> purple -> magenta -> red -> orange ->
# yellow -> cream, at the highest chroma sRGB allows.  L* of the interpolated ramp stays within 2 of
# the straight line and rises monotonically (tests/test_gpu_render.py checks).
_HARLEY = [
    (0.0010, 0.1043, 0.2471),  # L* 10, navy
    (0.1130, 0.1485, 0.5045),  # L* 21, blue
    (0.4922, 0.0688, 0.5829),  # L* 32, purple
    (0.7572, 0.0026, 0.5001),  # L* 43, magenta
    (0.9605, 0.1525, 0.3357),  # L* 54, red
    (0.9992, 0.4405, 0.2563),  # L* 64, red-orange
    (0.9988, 0.6468, 0.3185),  # L* 75, orange
    (0.9897, 0.8275, 0.3851),  # L* 86, yellow
    (0.9999, 0.9690, 0.8202),  # L* 97, cream white
]

# viridis (van der Walt, Smith & Firing, matplotlib's default, CC0): every 15th of the 256
# published entries, so these stops sit exactly on published values; linear interpolation between
# them stays within 2 % of the full table.
_VIRIDIS = [
    (0.267004, 0.004874, 0.329415),
    (0.281924, 0.089666, 0.412415),
    (0.280255, 0.165693, 0.476498),
    (0.263663, 0.237631, 0.518762),
    (0.237441, 0.305202, 0.541921),
    (0.208623, 0.367752, 0.552675),
    (0.182256, 0.426184, 0.557120),
    (0.159194, 0.482237, 0.558073),
    (0.137770, 0.537492, 0.554906),
    (0.121148, 0.592739, 0.544641),
    (0.128087, 0.647749, 0.523491),
    (0.180653, 0.701402, 0.488189),
    (0.274149, 0.751988, 0.436601),
    (0.395174, 0.797475, 0.367757),
    (0.535621, 0.835785, 0.281908),
    (0.688944, 0.865448, 0.182725),
    (0.845561, 0.887322, 0.099702),
    (0.993248, 0.906157, 0.143936),
]

_GRAYSCALE = [(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)]

# For signed numbers centred on zero (weights, weight x input): a cool-warm ramp after Moreland's
# diverging map, blue for negative, a neutral light grey exactly at t = 0.5 (zero), red for positive; the
# two halves have about the same lightness at equal distance from the middle, so neither sign looks
# stronger.  Not offered as a node colormap: nodes carry activations, which are not centred on zero.
_DIVERGING = [
    (0.2298, 0.2987, 0.7537),  # most negative
    (0.3848, 0.5093, 0.9175),
    (0.5530, 0.6902, 0.9955),
    (0.7234, 0.8165, 0.9852),
    (0.8650, 0.8650, 0.8650),  # zero
    (0.9692, 0.7606, 0.6592),
    (0.9567, 0.5980, 0.4773),
    (0.8674, 0.3394, 0.2805),
    (0.7057, 0.0156, 0.1502),  # most positive
]
DIVERGING = "diverging"

TABLES: dict[str, np.ndarray] = {
    "harley": np.array(_HARLEY, dtype=np.float32),
    "viridis": np.array(_VIRIDIS, dtype=np.float32),
    "grayscale": np.array(_GRAYSCALE, dtype=np.float32),
    DIVERGING: np.array(_DIVERGING, dtype=np.float32),  # last: the others keep their shader numbers
}
NAMES: tuple[str, ...] = tuple(TABLES)  # order = the int the shaders select by
# What every map gives for t = inf or NaN (an activation that overflowed): pure cyan, which none of the
# maps reaches (viridis' teal is the nearest, 0.5 away), so broken nodes never pass for a real value.
NONFINITE = (0.0, 1.0, 1.0)


def index(name: str) -> int:
    """The shader-side number of colormap `name`."""
    try:
        return NAMES.index(name)
    except ValueError:
        raise KeyError(f"unknown colormap {name!r} (known: {', '.join(NAMES)})") from None


def sample(name: str, t: float | np.ndarray) -> np.ndarray:
    """Colours of `name` at t (clamped to [0, 1]): shape t.shape + (3,), floats in [0, 1], exactly
    what the shaders compute (NONFINITE where t is inf or NaN)."""
    table = TABLES[NAMES[index(name)]]
    t = np.asarray(t, dtype=np.float64)
    finite = np.isfinite(t)
    t = np.clip(np.where(finite, t, 0.0), 0.0, 1.0)
    x = t * (len(table) - 1)
    i = np.minimum(x.astype(np.int64), len(table) - 2)
    f = (x - i)[..., None]
    rgb = table[i] * (1.0 - f) + table[i + 1] * f
    return np.where(finite[..., None], rgb, np.asarray(NONFINITE)).astype(np.float32)


def signed_t(values: float | np.ndarray, m: float) -> np.ndarray:
    """Where signed values sit on a diverging map over [-m, m]: 0 -> 0.5 exactly (all-zero data shows
    the zero colour, whatever m is)."""
    v = np.asarray(values, dtype=np.float64)
    m = float(m)
    if not m > 0.0 or not np.isfinite(m):
        return np.full(v.shape, 0.5)
    return np.clip(0.5 + 0.5 * v / m, 0.0, 1.0)


def glsl_block() -> str:
    """GLSL constants for shaders/lib/colormap.glsl: all tables end to end, and where each starts."""
    offsets = np.cumsum([0] + [len(t) for t in TABLES.values()])
    colors = np.concatenate(list(TABLES.values()))
    vecs = ",\n    ".join(f"vec3({r:.6f}, {g:.6f}, {b:.6f})" for r, g, b in colors)
    lines = [
        "// generated by engine/gpu/colormaps.py (glsl_block) -- edit the table there",
        f"#define CMAP_COUNT {len(TABLES)}",
        f"const int CMAP_OFFSET[{len(offsets)}] = int[{len(offsets)}]({', '.join(map(str, offsets))});",
        f"const vec3 CMAP_COLORS[{len(colors)}] = vec3[{len(colors)}](\n    {vecs}\n);",
    ]
    lines.append("const vec3 CMAP_NONFINITE = vec3({:.6f}, {:.6f}, {:.6f});".format(*NONFINITE))
    lines += [f"#define CMAP_{name.upper()} {i}" for i, name in enumerate(NAMES)]
    return "\n".join(lines) + "\n"
