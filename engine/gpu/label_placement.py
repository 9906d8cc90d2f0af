"""Where each layer's name is drawn on screen, for one view: beside its layer where nothing else is.

Names keep a constant pixel size while the network shrinks with distance, so in a deep, folded network
a name can run into a neighbour's, into a skip arc or over another layer's sheet.  `place_names` tries
a few spots per layer in turn (left of it; over its far edge or under its near edge, from either corner
or centred; beyond the arcs on its right or left where no other layer stands there), first with the
full name, then from its last word on ("downsample.0"), and drops the name where no spot is free.  A
spot is free when its text box (pixels, outline included) lies in the part of the view no panel covers
and overlaps no box placed before, no layer's sheet and no arc, column link or frame as projected; a
name beside its layer must also be nearer that sheet than any sheet level with it on its other side.
Order decides who yields: the focused layer first (hovered or selected, so it always shows its full
name), then the layers with nothing beside them on the left (the spine), bottom to top, then the
branches.  Pure numpy (no GL): the result is what LabelBatch takes, plus each text box (for tests).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1: pixels, y down
ARC_PX = 3.0  # an arc's or a frame's half width on screen, with a pixel to spare
CLEAR_PX = 1.0  # least free space between two text boxes (their outlines are inside them)
SIDE_PX = 12.0  # a name beside its layer stands this far off its edge
EDGE_PX = 10.0  # a name over (under) its layer stands this far above (below) the edge's corner


@dataclass(frozen=True)
class NameTag:
    """One layer's name as drawn: `text` pinned to world point `anchor`, shifted by `offset` pixels (y
    down, before the UI text scale) and aligned by `align` to it, as LabelBatch.set_labels takes them."""

    layer: int
    text: str
    anchor: tuple[float, float, float]
    offset: tuple[float, float]
    align: str
    box: Box  # where its ink lies on screen


def short_name(title: str, others: Collection[str] = ()) -> str:
    """A module path from its last word on ("layer2.0.downsample.0" -> "downsample.0", "layer2.1.conv2"
    -> "conv2"), the op an opaque layer stands for kept ("a.b.roll [roll]" -> "roll [roll]"), a part
    longer where it would read as another layer's whole name (`others`: "layer1.0.conv1" -> "0.conv1"
    beside a "conv1"); "" where that is the whole name (a short name stays whole or is dropped)."""
    name, sep, rest = title.partition(" [")
    parts = name.split(".")
    words = [k for k, p in enumerate(parts) if not p.isdigit()]
    if len(parts) < 3 or not words:
        return ""
    for k in range(words[-1], 0, -1):
        short = ".".join(parts[k:]) + sep + rest
        if short not in others:
            return short
    return ""


def project(view_proj: np.ndarray, points: np.ndarray, viewport: tuple[int, int]) -> np.ndarray:
    """World points (..., 3) -> pixels (..., 2), y down; NaN behind the eye."""
    p = np.asarray(points, np.float64)
    clip = p @ view_proj[:3, :3].T + view_proj[:3, 3]
    w = p @ view_proj[3, :3] + view_proj[3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        ndc = np.where((w > 1e-9)[..., None], clip[..., :2] / w[..., None], np.nan)
    return np.stack([(ndc[..., 0] + 1.0) * 0.5 * viewport[0], (1.0 - ndc[..., 1]) * 0.5 * viewport[1]], -1)


def _boxes_hit(box: Box, boxes: np.ndarray) -> bool:
    if not len(boxes):
        return False
    x0, y0, x1, y1 = box
    c = CLEAR_PX
    bx0, by0, bx1, by1 = boxes.T
    return bool(np.any((bx0 < x1 + c) & (x0 - c < bx1) & (by0 < y1 + c) & (y0 - c < by1)))


class _Sheets:
    """The layers' sheets as screen quads (M, 4, 2), with what the overlap test needs precomputed."""

    def __init__(self, quads: np.ndarray, layers: np.ndarray) -> None:
        self.layers = layers  # layer index of each quad
        self.lo, self.hi = quads.min(axis=1), quads.max(axis=1)
        edge = np.roll(quads, -1, axis=1) - quads
        self.normal = np.stack([-edge[..., 1], edge[..., 0]], -1)  # (M, 4 axes, 2)
        on_axes = np.einsum("mcd,mad->mac", quads, self.normal)  # each quad's corners on its own axes
        self.qmin, self.qmax = on_axes.min(-1), on_axes.max(-1)

    def misread(self, box: Box, own: int) -> bool:
        """Whether a name in `box` beside layer `own`'s sheet would read as another's: a sheet level
        with it on its other side is nearer than its own (a name beyond the arcs, by the next column)."""
        x0, y0, x1, y1 = box
        k = np.flatnonzero(self.layers == own)
        if not len(k):
            return False
        lo, hi = self.lo[k[0]], self.hi[k[0]]
        level = (self.lo[:, 1] < y1) & (y0 < self.hi[:, 1]) & (self.layers != own)
        if lo[0] >= x1 - 1.0:  # its sheet on its right: look left
            gaps = x0 - self.hi[level & (self.hi[:, 0] <= x0), 0]
            return bool(len(gaps)) and float(gaps.min()) < lo[0] - x1
        gaps = self.lo[level & (self.lo[:, 0] >= x1), 0] - x1
        return bool(len(gaps)) and float(gaps.min()) < x0 - hi[0]

    def hit(self, box: Box) -> bool:
        """Whether the box overlaps a quad: no separating axis among the box's two and the quad's four."""
        x0, y0, x1, y1 = box
        near = (self.lo[:, 0] < x1) & (x0 < self.hi[:, 0]) & (self.lo[:, 1] < y1) & (y0 < self.hi[:, 1])
        if not near.any():
            return False
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        on_axes = np.einsum("cd,mad->mac", corners, self.normal[near])
        apart = (self.qmax[near] <= on_axes.min(-1)) | (on_axes.max(-1) <= self.qmin[near])
        return bool(np.any(~apart.any(axis=1)))


class _Lines:
    """Arcs, links and frames as screen segments a -> b (pixels), with their bounding boxes."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.d = a, b - a
        self.lo, self.hi = np.minimum(a, b), np.maximum(a, b)

    def hit(self, box: Box) -> bool:
        """Whether a segment passes through the box grown by an arc's half width (slab clipping)."""
        x0, y0, x1, y1 = box[0] - ARC_PX, box[1] - ARC_PX, box[2] + ARC_PX, box[3] + ARC_PX
        near = (self.lo[:, 0] <= x1) & (self.hi[:, 0] >= x0) & (self.lo[:, 1] <= y1) & (self.hi[:, 1] >= y0)
        if not near.any():
            return False
        p, d = self.a[near], self.d[near]
        t0, t1 = np.zeros(len(p)), np.ones(len(p))
        with np.errstate(divide="ignore", invalid="ignore"):
            for k, (lo, hi) in enumerate(((x0, x1), (y0, y1))):
                ta, tb = (lo - p[:, k]) / d[:, k], (hi - p[:, k]) / d[:, k]
                flat = d[:, k] == 0  # parallel to this slab: inside it or never
                inside = (p[:, k] >= lo) & (p[:, k] <= hi)
                t0 = np.where(flat, np.where(inside, t0, 2.0), np.maximum(t0, np.minimum(ta, tb)))
                t1 = np.where(flat, t1, np.minimum(t1, np.maximum(ta, tb)))
        return bool(np.any(t0 <= t1))


def place_names(
    layout,
    titles: Sequence[str],
    visible: Sequence[bool],
    view_proj: np.ndarray,
    viewport: tuple[int, int],
    ink: Callable[[str, str], Box],
    scale: float = 0.8,
    ui_scale: float = 1.0,
    focus: int = -1,
    taken: Sequence[Box] = (),
    arcs: bool = True,
    region: tuple[float, float, float, float] | None = None,
) -> list[NameTag]:
    """The names of the visible layers of `layout` that have room in this view (see the module doc).
    `ink(text, align)` is the text's ink box around its anchor at text size 1 (GlyphAtlas.ink_box);
    `scale` the names' text size, `ui_scale` the UI's on top (LabelBatch.draw's scale); `taken` boxes
    already drawn (class labels); `arcs`: whether arcs, links and frames are drawn (they are obstacles);
    `region` (x, y, w, h pixels, y down) where names may go: the part of the view no panel covers
    (default: all of it)."""
    vp = np.asarray(view_proj, np.float64)
    b = np.asarray(layout.layer_bounds, np.float64)
    levels = np.asarray(layout.levels)
    shown = [i for i in range(len(b)) if visible[i]]
    # Every shown layer's sheet as a screen quad (its four corners in its plane).
    y = (b[:, 0, 1] + b[:, 1, 1]) / 2
    xs, zs = b[:, :, 0], b[:, :, 2]
    corners = np.stack(
        [
            np.stack([xs[:, 0], y, zs[:, 0]], -1),
            np.stack([xs[:, 1], y, zs[:, 0]], -1),
            np.stack([xs[:, 1], y, zs[:, 1]], -1),
            np.stack([xs[:, 0], y, zs[:, 1]], -1),
        ],
        1,
    )
    quads = project(vp, corners, viewport)
    on_screen = ~np.isnan(quads).any(axis=(1, 2))
    drawn = np.array([i for i in shown if on_screen[i]], np.int64)
    sheets = _Sheets(quads[drawn], drawn)
    # Arcs, column links and frames as screen segments.
    lines = [a.points for a in (*layout.arcs, *layout.links)] + [f for _, f in layout.frames] if arcs else []
    pa, pb = np.zeros((0, 2)), np.zeros((0, 2))
    if lines:
        pa = project(vp, np.concatenate([p[:-1] for p in lines]), viewport)
        pb = project(vp, np.concatenate([p[1:] for p in lines]), viewport)
        keep = ~(np.isnan(pa).any(1) | np.isnan(pb).any(1))
        pa, pb = pa[keep], pb[keep]
    segments = _Lines(pa, pb)
    # How far out to the right (left) the arcs beside a layer's level run: a name there stands beyond them.
    right, left = b[:, 1, 0].copy(), b[:, 0, 0].copy()
    for arc in layout.arcs if arcs else ():
        lo, hi = levels[arc.source], levels[arc.target]
        by = (levels >= lo) & (levels <= hi)
        if arc.side > 0:
            right[by] = np.maximum(right[by], arc.points[:, 0].max())
        else:
            left[by] = np.minimum(left[by], arc.points[:, 0].min())

    placed = [np.asarray(t, np.float64) for t in taken]
    boxes = np.array(placed).reshape(-1, 4)

    # Whether another shown layer stands on the same level to the left (right).
    lv, x_lo, x_hi = levels[shown], b[shown, 0, 0], b[shown, 1, 0]
    beside_left = {i: bool(np.any((lv == levels[i]) & (x_hi <= b[i, 0, 0]))) for i in shown}
    beside_right = {i: bool(np.any((lv == levels[i]) & (x_lo >= b[i, 1, 0]))) for i in shown}

    # The anchors of the nine spots of every layer (see `how` below), projected at once.
    (x0, _, z0), (x1, _, z1) = b[:, 0].T, b[:, 1].T
    zm, xm = (z0 + z1) / 2, (x0 + x1) / 2
    spot_x = np.stack([x0, x0, x0, x1, x1, xm, xm, right, left], -1)
    spot_z = np.stack([zm, z0, z1, z0, z1, z0, z1, zm, zm], -1)
    spot_anchor = np.stack([spot_x, np.broadcast_to(y[:, None], spot_x.shape), spot_z], -1)
    spot_px = project(vp, spot_anchor, viewport)

    def spots(i: int) -> list[tuple[str, np.ndarray, np.ndarray, tuple[float, float], str]]:
        """(kind, anchor, its pixel position, offset, align) of each spot of layer i, best first."""
        anchors, px = spot_anchor[i], spot_px[i]
        how = [
            ("side", (-SIDE_PX, 0.0), "right"),
            ("edge", (0.0, -EDGE_PX), "left"),
            ("edge", (0.0, EDGE_PX), "left"),
            ("edge", (0.0, -EDGE_PX), "right"),
            ("edge", (0.0, EDGE_PX), "right"),
            ("edge", (0.0, -EDGE_PX), "center"),
            ("edge", (0.0, EDGE_PX), "center"),
            ("side", (SIDE_PX, 0.0), "left"),
            ("side", (-SIDE_PX, 0.0), "right"),
        ]
        order = list(range(9))
        if beside_left[i]:  # a branch: its left is its neighbour's, so over or under it first
            order = [1, 2, 7, 3, 4, 5, 6]
        if beside_right[i]:  # beyond the arcs on the right would name the neighbour there
            order = [k for k in order if k != 7]
        out = []
        for k in order:
            if not np.isnan(px[k]).any():
                out.append((how[k][0], anchors[k], px[k], how[k][1], how[k][2]))
        return out

    inks: dict[tuple[str, str], Box] = {}

    def box_of(anchor_px: np.ndarray, text: str, offset, align: str) -> Box:
        if (text, align) not in inks:
            inks[text, align] = ink(text, align)
        ix0, iy0, ix1, iy1 = inks[text, align]
        ox, oy = offset
        ax, ay = anchor_px
        return (
            ax + ui_scale * (scale * ix0 + ox),
            ay + ui_scale * (scale * iy0 + oy),
            ax + ui_scale * (scale * ix1 + ox),
            ay + ui_scale * (scale * iy1 + oy),
        )

    def off_edge(i: int, anchor_px: np.ndarray, box: Box, offset: tuple[float, float]) -> tuple[float, float]:
        """A name beside layer i pinned to the middle of its side edge, moved out as far as that edge,
        slanted in perspective, reaches past the anchor over the name's height."""
        a, b_ = quads[i, [0, 3]] if offset[0] < 0 else quads[i, [1, 2]]
        if abs(b_[1] - a[1]) < 1e-6:
            return offset
        ys = np.clip([box[1], box[3]], *sorted((a[1], b_[1])))
        xs = a[0] + (ys - a[1]) / (b_[1] - a[1]) * (b_[0] - a[0])
        if offset[0] < 0:
            return (offset[0] - max(0.0, float(anchor_px[0] - xs.min())) / ui_scale, offset[1])
        return (offset[0] + max(0.0, float(xs.max() - anchor_px[0])) / ui_scale, offset[1])

    rx, ry, rw, rh = region if region is not None else (0.0, 0.0, float(viewport[0]), float(viewport[1]))

    def free(box: Box) -> bool:
        if not (rx <= box[0] and box[2] <= rx + rw and ry <= box[1] and box[3] <= ry + rh):
            return False  # (partly) off screen or under a panel
        return not (_boxes_hit(box, boxes) or sheets.hit(box) or segments.hit(box))

    primary = [i for i in shown if not beside_left[i]]
    order = sorted(primary, key=lambda i: (levels[i], i)) + [i for i in shown if beside_left[i]]
    if 0 <= focus < len(b) and visible[focus]:
        order = [focus] + [i for i in order if i != focus]
    whole = set(titles)  # a short name must not read as another layer's
    tags = []
    for i in order:
        if not on_screen[i]:
            continue
        places = spots(i)
        texts = [titles[i]] if i == focus else [titles[i], short_name(titles[i], whole)]
        choice = None
        for text in (t for t in texts if t):
            for kind, anchor, px, offset, align in places:
                if kind == "side":
                    offset = off_edge(i, px, box_of(px, text, offset, align), offset)
                box = box_of(px, text, offset, align)
                if kind == "side" and sheets.misread(box, i):
                    continue
                if free(box):
                    choice = (text, anchor, offset, align, box)
                    break
            if choice:
                break
        if choice is None and i == focus and places:  # the focused layer's name is drawn anyway
            _, anchor, px, offset, align = places[0]
            choice = (titles[i], anchor, offset, align, box_of(px, titles[i], offset, align))
        if choice is None:
            continue
        text, anchor, offset, align, box = choice
        tags.append(NameTag(i, text, tuple(float(v) for v in anchor), offset, align, box))
        boxes = np.vstack([boxes, np.array(box)[None]])
    return tags
