"""Layout: where every node of a network sits in 3D, and the arcs of its skip connections (pure numpy).

Takes a Dag (engine/graph/dag.py) or a NetSpec (a chain: layers without `inputs` read the layer before
them).  The look follows Harley 2015: layers are horizontal sheets stacked along +Y (input at the
bottom); a grid layer's maps are square grids in the XZ plane (image row -> +Z, column -> +X, upright
from the default camera), side by side along X, or in a near-square block when there are many or the
row would be far wider than the network is tall, or in even rows when it would be far wider than the
network's median layer.  Vector layers are rows along X; very long ones wrap into a near-square grid.
Levels are spaced by their deepest sheet (a folded one more: it sits low, seen steeply), and never
much closer than the network's median gap, so sheets seen from the home view do not cover each other.

A layer's level is the longest path from an input (hidden layers take no level).  The spine, the
longest path into the output, stands straight; layers sharing a level (inception towers, resnet
shortcut convs) sit side by side, each as close above its sources as the others leave room for.  An
edge set whose source is more than one level down becomes an Arc: out of the source's side, along
the middle of the gap above it (where no sheet lies), up beyond every layer it passes and back into
the target's side; arcs on one side nest.  A deep network folds into columns at levels no arc
crosses, as many as show it biggest in a 1280 x 720 view; a link (also an Arc) runs from the top of
one column to the bottom of the next.  Opaque layers get a frame, so they read as a block.  Arrays
are indexed by node id and uploaded as they are; engine/gpu decides how arcs and frames are drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from convscope.engine.camera import OrbitCamera


@dataclass(frozen=True)
class LayoutStyle:
    grid_pitch: float = 1.0  # distance between neighbouring pixels of a feature map
    grid_node: float = 0.8  # node size in a feature map (world units)
    map_gap: float = 4.0  # gap between two feature maps of one layer, in addition to a quarter map
    vector_pitch: float = 2.0  # distance between units of a fully connected row
    vector_node: float = 1.5
    output_pitch: float = 7.0  # output units are few and labelled: space them out
    output_node: float = 4.0
    max_row: int = 160  # longer vector layers wrap into several rows
    square_from: int = 1000  # vector layers of at least this many units wrap into a near-square grid
    layer_gap: float = 28.0  # least vertical distance between consecutive levels
    min_gap_share: float = 0.6  # ... and at least this share of the network's median level gap: where
    # deep sheets set wide gaps, a run of shallow ones at the least gap ends up a few pixels apart when
    # fitted, seen steeply at the bottom of the view, each sheet covering the one below
    gap_per_depth: float = 0.8  # ... and at least this times the deeper (Z extent) of their sheets: at
    # the home view's 28 degree pitch a sheet of depth D covers about 0.53 D of gap, plus perspective
    max_maps_per_row: int = 16  # more maps than this are arranged in a near-square block
    max_aspect: float = 4.0  # a layer wider than this times the network's height wraps into rows
    max_width_share: float = 3.0  # ... and a grid layer wider than this times the median layer's: its
    # labels would sit far out to the left and the fit would be set by that one row
    folded_gap_per_depth: float = 1.2  # the gap by such a folded sheet: big maps come first, at the
    # bottom of the fitted view, seen steeply (some 45 degrees), where 0.8 D has sheets touch
    branch_gap: float = 16.0  # free room between layers side by side on one level
    arc_margin: float = 10.0  # how far an arc clears the widest layer it passes
    arc_spacing: float = 6.0  # distance between nested arcs on one side
    arc_corner_steps: int = 12  # polyline segments per rounded corner of an arc
    frame_margin: float = 2.0  # an opaque layer's frame, this far outside its nodes
    reference_view: tuple[float, float] = (800.0, 640.0)  # pixels: a 1280 x 720 window less the docked
    # panels (some 440 px on the left) and margins.  A deep network folds into the columns side by side
    # that show it biggest there, its names included
    max_columns: int = 8
    min_column_levels: int = 6  # a column holds at least this many levels (short networks stay whole)
    max_stretch: float = 2.0  # a column shorter than the tallest spaces its levels up to this much wider
    name_char_px: float = 9.5  # a layer name's width per character in reference-view pixels (the names'
    # text is drawn at a constant pixel size): each column leaves its longest name this much room on its
    # left, plus `name_pad_px`, so that at the reference view no name reaches the column before
    name_pad_px: float = (
        40.0  # (the column link and, seen in perspective, the sheets' near corners take some)
    )


@dataclass(frozen=True)
class Arc:
    """A skip connection: edge set `edge_set` of layer `target` reads layer `source` from more than one
    level below.  `points` (K, 3) is the polyline from the source's side to the target's side."""

    source: int
    target: int
    edge_set: int
    kind: str  # the edge set's kind ("add", "concat", ...; "chain" for a layer without edge sets)
    side: int  # -1: bows out to the left (-X), +1: to the right
    points: np.ndarray


@dataclass(frozen=True)
class Layout:
    spec: object  # the Dag or NetSpec laid out (as given)
    positions: np.ndarray  # (N, 3) float32 centre of each node, by node id
    sizes: np.ndarray  # (N,) float32 edge length of each node's square
    layer_index: np.ndarray  # (N,) int32 index into spec.layers
    layer_bounds: np.ndarray  # (L, 2, 3) float32 min / max corner of each layer (node extents included)
    levels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))  # (L,) level of each layer
    arcs: tuple[Arc, ...] = ()  # skip connections
    links: tuple[Arc, ...] = ()  # a folded network's hops from the top of one column to the next one
    frames: tuple[tuple[int, np.ndarray], ...] = ()  # (layer index, closed polyline (5, 3)) per opaque layer
    name_room: float = 0.0  # a folded network: room kept left of it for its first column's names (world)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Min / max corner of everything drawn: the layers and the arcs beside them."""
        lo, hi = self.layer_bounds[:, 0].min(axis=0), self.layer_bounds[:, 1].max(axis=0)
        lo = lo - np.array([self.name_room, 0.0, 0.0], lo.dtype)  # fitted views leave the names room
        if self.arcs or self.links:
            pts = np.concatenate([a.points for a in (*self.arcs, *self.links)])
            lo, hi = np.minimum(lo, pts.min(axis=0)), np.maximum(hi, pts.max(axis=0))
        return lo, hi

    def layer_center(self, i: int) -> np.ndarray:
        return self.layer_bounds[i].mean(axis=0)


# -- the graph as levels ------------------------------------------------------------------------------


def _sources(graph) -> list[list[tuple[int, int, str]]]:
    """Per layer, its edge sets as (source layer index, edge set index, kind); a layer without an
    `inputs` attribute (a NetSpec's) reads the one before it, and so does every layer of a graph that
    names no inputs at all (a shape-only description: stacked, not strewn side by side as unconnected)."""
    index = {layer.name: i for i, layer in enumerate(graph.layers)}
    connected = any(getattr(layer, "inputs", ()) for layer in graph.layers)
    out = []
    for i, layer in enumerate(graph.layers):
        if connected and hasattr(layer, "inputs"):
            out.append([(index[e.source], k, e.kind) for k, e in enumerate(layer.inputs)])
        else:
            out.append([(i - 1, 0, "chain")] if i else [])
    return out


def _levels(sources: list[list[tuple[int, int, str]]], vis: list[bool]) -> np.ndarray:
    """Longest path from an input, counting visible layers only (layers are in topological order)."""
    level = np.zeros(len(sources), np.int32)
    for i, srcs in enumerate(sources):
        if srcs:
            level[i] = max(level[s] + int(vis[s]) for s, _, _ in srcs)
    return level


def _output_index(graph) -> int:
    name = getattr(graph, "output", "")
    if name:
        for i, layer in enumerate(graph.layers):
            if layer.name == name:
                return i
    return len(graph.layers) - 1


def _spine(graph, sources, level: np.ndarray) -> set[int]:
    """The longest path into the output: from it, down through the highest source each time (ties:
    the one nearest the middle of the layer's inputs, so a middle tower stays central)."""
    spine, i = set(), _output_index(graph)
    while True:
        spine.add(i)
        srcs = [s for s, _, _ in sources[i]]
        if not srcs:
            return spine
        top = max(level[s] for s in srcs)
        mid = (len(srcs) - 1) / 2
        i = min((abs(k - mid), k, s) for k, s in enumerate(srcs) if level[s] == top)[2]


# -- one layer's nodes, centred on the origin ---------------------------------------------------------


def _is_output(graph, i: int) -> bool:
    layer = graph.layers[i]
    if layer.is_grid:
        return False
    return layer.kind == "output" or layer.name == getattr(graph, "output", None)


def _grid_per_row(c: int, style: LayoutStyle) -> int:
    return c if c <= style.max_maps_per_row else math.ceil(math.sqrt(c))


def _vector_per_row(n: int, style: LayoutStyle) -> int:
    if n >= style.square_from:
        return math.ceil(math.sqrt(n))
    return n if n <= style.max_row else math.ceil(n / math.ceil(n / style.max_row))


def _vector_pitch(graph, i: int, style: LayoutStyle) -> tuple[float, float]:
    if _is_output(graph, i):
        return style.output_pitch, style.output_node
    return style.vector_pitch, style.vector_node


def _map_step(layer, style: LayoutStyle) -> tuple[float, float, float]:
    """(map width, map depth, gap between maps) of a grid layer."""
    _, h, w = layer.shape
    map_w, map_h = w * style.grid_pitch, h * style.grid_pitch
    return map_w, map_h, style.map_gap + 0.25 * max(map_w, map_h)


def _extent(graph, i: int, per_row: int, style: LayoutStyle) -> tuple[float, float]:
    """(width, depth) of layer i arranged `per_row` maps (or units) to a row, node extents included."""
    layer = graph.layers[i]
    if layer.is_grid:
        c = layer.shape[0]
        map_w, map_h, gap = _map_step(layer, style)
        rows = math.ceil(c / per_row)
        node_pad = style.grid_node - style.grid_pitch
        return per_row * map_w + (per_row - 1) * gap + node_pad, rows * map_h + (rows - 1) * gap + node_pad
    pitch, node = _vector_pitch(graph, i, style)
    rows = math.ceil(layer.count / per_row)
    return (per_row - 1) * pitch + node, (rows - 1) * pitch + node


def _narrowed(graph, i: int, per_row: int, width_cap: float, style: LayoutStyle) -> int:
    """Fewer maps (units) to a row until the layer is at most `width_cap` wide, but never narrower
    than a near-square block: beyond that a deeper sheet costs more height than it saves width."""
    layer = graph.layers[i]
    n = layer.shape[0] if layer.is_grid else layer.count
    least = math.ceil(math.sqrt(n))
    if _extent(graph, i, per_row, style)[0] <= width_cap:
        return per_row
    while per_row > least and _extent(graph, i, per_row, style)[0] > width_cap:
        per_row = max(least, min(per_row - 1, int(per_row * 0.9)))
    return math.ceil(n / math.ceil(n / per_row))  # rows as even as they can be: 8 + 8, not 9 + 7


def _grid_nodes(layer, per_row: int, style: LayoutStyle, out: np.ndarray, x0: float, y: float):
    """Write the layer's node centres into `out` (count, 3), its block centred on (x0, y, 0); returns
    the (min, max) node centre, from the per-axis offsets (a reduce over millions of rows is slow)."""
    c, h, w = layer.shape
    p = style.grid_pitch
    map_w, map_h, gap = _map_step(layer, style)
    rows = math.ceil(c / per_row)
    ch = np.arange(c)
    mcol, mrow = ch % per_row, ch // per_row
    # Centre of each map, the whole block centred on the origin.
    cx = x0 + (mcol - (per_row - 1) / 2) * (map_w + gap)
    cz = (mrow - (rows - 1) / 2) * (map_h + gap)
    lx = (np.arange(w) - (w - 1) / 2) * p
    lz = (np.arange(h) - (h - 1) / 2) * p
    pos = out.reshape(c, h, w, 3)
    pos[..., 0] = cx[:, None, None] + lx[None, None, :]
    pos[..., 1] = y
    pos[..., 2] = cz[:, None, None] + lz[None, :, None]
    lo = np.array([cx.min() + lx[0], y, cz.min() + lz[0]])
    hi = np.array([cx.max() + lx[-1], y, cz.max() + lz[-1]])
    return lo, hi


def _vector_nodes(n: int, per_row: int, pitch: float, out: np.ndarray, x0: float, y: float):
    rows = math.ceil(n / per_row)
    i = np.arange(n)
    out[:, 0] = x0 + (i % per_row - (per_row - 1) / 2) * pitch
    out[:, 1] = y
    out[:, 2] = (i // per_row - (rows - 1) / 2) * pitch
    return out.min(axis=0), out.max(axis=0)  # vector layers are small


# -- placing layers side by side ----------------------------------------------------------------------


def _isotonic(target: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence nearest `target` in weighted least squares (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [weighted mean, weight, count]
    for t, w in zip(target, weight, strict=True):
        blocks.append([float(t), float(w), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.concatenate([np.full(n, m) for m, _, n in blocks])


def _pack(want: np.ndarray, widths: np.ndarray, weight: np.ndarray, gap: float) -> np.ndarray:
    """Centres, in the given left-to-right order, as near `want` as widths plus `gap` between allow."""
    need = np.concatenate([[0.0], np.cumsum((widths[:-1] + widths[1:]) / 2 + gap)])
    return _isotonic(want - need, weight) + need


# -- arcs -----------------------------------------------------------------------------------------------


def _arc_points(x0: float, y0: float, x1: float, y1: float, xr: float, r0: float, r1: float, steps: int):
    """Out of the source's side at (x0, y0), up to half way to the next level (no sheet lies there),
    across to the route x, up to half way below the target, across and into its side at (x1, y1)."""
    side = 1.0 if xr >= x0 else -1.0
    s0 = min(0.5 * r0, 0.25 * abs(xr - x0))  # a short stub clear of the sheet's edge before turning
    s1 = min(0.5 * r1, 0.25 * abs(xr - x1))
    way = [
        (x0, y0),
        (x0 + side * s0, y0),
        (x0 + side * s0, y0 + r0),
        (xr, y0 + r0),
        (xr, y1 - r1),
        (x1 + side * s1, y1 - r1),
        (x1 + side * s1, y1),
        (x1, y1),
    ]
    return _rounded(way, 0.5 * min(r0, r1), steps)


def _route_arcs(sources, level, vis, bounds, y_of_level, style: LayoutStyle) -> tuple[Arc, ...]:
    """One arc per (source, target) pair more than one level apart, both shown."""
    x_mid = bounds[:, :, 0].mean(axis=1)
    wanted, seen = [], set()
    for t, srcs in enumerate(sources):
        for s, k, kind in srcs:
            if not (vis[s] and vis[t]) or level[t] - level[s] <= 1 or (s, t) in seen:
                continue
            seen.add((s, t))
            # Out on the right, where no layer names are, unless the source sits left of its target.
            side = -1 if x_mid[s] < x_mid[t] - 1e-3 else 1
            wanted.append((int(level[t] - level[s]), s, t, k, kind, side))
    shown = np.flatnonzero(vis)
    taken: dict[int, list[tuple[int, int, int]]] = {-1: [], 1: []}  # side -> (lo level, hi level, slot)
    arcs = []
    for _, s, t, k, kind, side in sorted(wanted):  # short arcs first: they take the inner slots
        lo, hi = int(level[s]), int(level[t])
        passed = shown[(level[shown] >= lo) & (level[shown] <= hi)]
        busy = {slot for a, b, slot in taken[side] if a < hi and lo < b}
        slot = next(i for i in range(len(busy) + 1) if i not in busy)
        taken[side].append((lo, hi, slot))
        out = style.arc_margin + slot * style.arc_spacing
        if side < 0:
            xr = float(bounds[passed, 0, 0].min()) - out
            x0, x1 = float(bounds[s, 0, 0]), float(bounds[t, 0, 0])
        else:
            xr = float(bounds[passed, 1, 0].max()) + out
            x0, x1 = float(bounds[s, 1, 0]), float(bounds[t, 1, 0])
        r0 = 0.5 * (y_of_level[lo + 1] - y_of_level[lo])
        r1 = 0.5 * (y_of_level[hi] - y_of_level[hi - 1])
        pts = _arc_points(x0, y_of_level[lo], x1, y_of_level[hi], xr, r0, r1, style.arc_corner_steps)
        arcs.append(Arc(s, t, k, kind, side, pts))
    return tuple(arcs)


def _frame(lo: np.ndarray, hi: np.ndarray, margin: float) -> np.ndarray:
    (x0, y, z0), (x1, _, z1) = lo - margin, hi + margin
    y = float((lo[1] + hi[1]) / 2)
    return np.array([[x0, y, z0], [x1, y, z0], [x1, y, z1], [x0, y, z1], [x0, y, z0]], np.float32)


# -- folding a deep network into columns --------------------------------------------------------------


def _clean_cuts(sources, level: np.ndarray, n_levels: int) -> list[int]:
    """Levels k after which a column may end: every edge across k | k+1 runs from level k to k + 1,
    so no arc has to cross from one column to the next."""
    crossing = np.zeros(n_levels + 1, np.int64)  # edges spanning more than the cut, by difference array
    for t, srcs in enumerate(sources):
        for s, _, _ in srcs:
            if level[t] - level[s] > 1:
                crossing[level[s] + 1] += 1
                crossing[level[t]] -= 1
    busy = np.cumsum(crossing)  # busy[k] > 0: some long edge spans the cut below level k
    return [k for k in range(n_levels - 1) if busy[k] == 0 and busy[k + 1] == 0]


def _partition(y_of_level: np.ndarray, cuts: list[int], k: int) -> list[tuple[int, int]] | None:
    """k runs of levels, split at `cuts`, whose tallest run is as short as can be (dynamic programme)."""
    ends = [*cuts, len(y_of_level) - 1]  # a run may end after each cut, the last after the top level
    if k > len(ends):
        return None
    height = lambda a, b: y_of_level[ends[b]] - y_of_level[ends[a] + 1 if a >= 0 else 0]  # noqa: E731
    best = {(1, j): (height(-1, j), -1) for j in range(len(ends))}
    for parts in range(2, k + 1):
        for j in range(parts - 1, len(ends)):
            best[parts, j] = min(
                (max(best[parts - 1, i][0], height(i, j)), i)
                for i in range(parts - 2, j)
                if (parts - 1, i) in best
            )
    runs, j = [], len(ends) - 1
    for parts in range(k, 0, -1):
        i = best[parts, j][1]
        runs.append((ends[i] + 1 if i >= 0 else 0, ends[j]))
        j = i
    return runs[::-1]


def _fitted_scale(widths, heights, depth, names_px, link: float, style: LayoutStyle) -> float:
    """Pixels per world unit, at the middle of the view, of columns `widths` x `heights` (`depth` deep)
    fitted into the reference view by the home camera, with `names_px` of room left of each column
    (after the first) for its layer names and `link` world units between two columns for the link."""
    ref_w, ref_h = style.reference_view
    cam = OrbitCamera()
    scale = 1.0
    for _ in range(
        6
    ):  # the names' room in world units depends on the scale it yields: a few rounds settle it
        wide = float(sum(widths)) + sum(link + n / scale for n in names_px[1:])
        half = np.array([wide, float(max(heights)), depth]) / 2
        cam.fit(-half, half, ref_w / ref_h, margin=0.08)
        px = cam.project(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), ref_w, ref_h)
        scale = float(px[1, 0] - px[0, 0])
    return scale


def _fold(row_lo, row_hi, row_depth, row_name, y_of_level, cuts, style: LayoutStyle):
    """(x offset, y) per level, the runs of levels per column and the room left of the first for its
    names (world units; none for one column): the fold, of at most max_columns, that shows the network
    biggest in the reference view, columns bottom-aligned, left to right, each one's longest name
    (`row_name`: pixels, per level) room to its left."""
    n = len(y_of_level)
    link = 2.0 * style.arc_spacing  # the link's band beside its column, clear of that column's arcs
    best = None
    for k in range(1, style.max_columns + 1):
        runs = _partition(y_of_level, cuts, k)
        if runs is None:
            break
        if k > 1 and min(b - a + 1 for a, b in runs) < style.min_column_levels:
            continue
        lo = np.array([row_lo[a : b + 1].min() for a, b in runs])
        hi = np.array([row_hi[a : b + 1].max() for a, b in runs])
        heights = [float(y_of_level[b] - y_of_level[a]) for a, b in runs]
        names = [float(row_name[a : b + 1].max()) + style.name_pad_px for a, b in runs]
        depth = float(row_depth.max()) + 2 * style.arc_margin  # the links pass in front of the sheets
        scale = _fitted_scale(hi - lo, heights, depth, names, link, style)
        if best is None or scale > best[0] * 1.05:  # another column must pay for itself
            best = (scale, runs, lo, hi, names)
    scale, runs, lo, hi, names = best
    x_off, y = np.zeros(n), np.array(y_of_level, np.float64)
    if len(runs) == 1:
        return x_off, y, runs, 0.0  # one column: the spine stays at X = 0
    # Between two columns: the link beside the left one, then the right one's names.
    gaps = [link + names[c] / scale for c in range(1, len(runs))]
    left = -0.5 * (float((hi - lo).sum()) + sum(gaps))  # the columns centred on X = 0
    tallest = max(float(y_of_level[b] - y_of_level[a]) for a, b in runs)
    for c, (a, b) in enumerate(runs):
        if c:
            left += gaps[c - 1]
        x_off[a : b + 1] = left - lo[c]
        # A shorter column spreads its levels (the tallest sets the fitted height anyway), within reason.
        height = float(y_of_level[b] - y_of_level[a])
        stretch = min(tallest / height, style.max_stretch) if height > 0 else 1.0
        y[a : b + 1] = (y_of_level[a : b + 1] - y_of_level[a]) * stretch
        left += hi[c] - lo[c]
    return x_off, y, runs, names[0] / scale


def _rounded(way: list[tuple[float, ...]], radius: float, steps: int) -> np.ndarray:
    """The polyline through `way` (XY points at Z = 0, or XYZ) with every corner rounded (a quadratic
    curve of at most `radius`, and at most half of either leg)."""
    w = np.asarray(way, np.float64)
    if w.shape[1] == 2:
        w = np.c_[w, np.zeros(len(w))]
    out = [w[:1]]
    t = np.linspace(0.0, 1.0, steps + 1)[:, None]
    for a, p, b in zip(w[:-2], w[1:-1], w[2:], strict=True):
        la, lb = np.linalg.norm(a - p), np.linalg.norm(b - p)
        r = min(radius, la / 2, lb / 2)
        p0, p1 = p + (a - p) / max(la, 1e-9) * r, p + (b - p) / max(lb, 1e-9) * r
        out.append((1 - t) ** 2 * p0 + 2 * (1 - t) * t * p + t**2 * p1)
    out.append(w[-1:])
    return np.concatenate(out).astype(np.float32)


def _links(sources, level, vis, bounds, arcs, x_off, y_of_level, runs, style: LayoutStyle) -> tuple[Arc, ...]:
    """Where a column ends, one band from its top layer over to the next column's bottom layer: up
    out of the top sheet, forward to just in front of the columns' sheets (seen in perspective, their
    near corners reach out sideways), across, down the gap between the columns, back under the next
    sheet and up into it."""
    links = []
    shown = np.flatnonzero(vis)
    for (a, b), (a2, b2) in zip(runs[:-1], runs[1:], strict=True):
        pairs = [
            (abs(bounds[s, :, 0].mean() - x_off[b]) + abs(bounds[t, :, 0].mean() - x_off[a2]), s, t, k, kind)
            for t, srcs in enumerate(sources)
            for s, k, kind in srcs
            if vis[s] and vis[t] and level[s] == b and level[t] == a2
        ]
        if not pairs:
            continue
        _, s, t, k, kind = min(pairs)
        here = shown[(level[shown] >= a) & (level[shown] <= b)]
        there = shown[(level[shown] >= a2) & (level[shown] <= b2)]
        right = max(
            [float(bounds[here, 1, 0].max())]
            + [float(x.points[:, 0].max()) for x in arcs if x.target in here]
        )
        # Just beyond its own column's outermost arc: the rest of the gap holds the next column's names.
        xc = right + style.arc_spacing
        zf = float(bounds[np.r_[here, there], 1, 2].max()) + style.arc_margin
        up = 0.5 * (y_of_level[b] - y_of_level[b - 1]) if b > a else style.layer_gap
        down = 0.5 * (y_of_level[a2 + 1] - y_of_level[a2]) if b2 > a2 else style.layer_gap
        xs, xt = float(bounds[s, :, 0].mean()), float(bounds[t, :, 0].mean())
        ys, yt = float(y_of_level[b]), float(y_of_level[a2])
        way = [
            (xs, ys, 0.0),
            (xs, ys + up, 0.0),
            (xs, ys + up, zf),
            (xc, ys + up, zf),
            (xc, yt - down, zf),
            (xt, yt - down, zf),
            (xt, yt - down, 0.0),
            (xt, yt, 0.0),
        ]
        pts = _rounded(way, min(up, down), style.arc_corner_steps)
        links.append(Arc(s, t, k, kind, 1, pts))
    return tuple(links)


# -- the whole network ----------------------------------------------------------------------------------


def build_layout(graph, style: LayoutStyle | None = None, visible: list[bool] | None = None) -> Layout:
    """Place every node of `graph` (a Dag or NetSpec).  Hidden layers (visible[i] False) keep their
    nodes but take no level, so the remaining layers close up."""
    style = style or LayoutStyle()
    layers = graph.layers
    n_layers = len(layers)
    vis = [True] * n_layers if visible is None else [bool(v) for v in visible]
    sources = _sources(graph)
    level = _levels(sources, vis)
    n_levels = int(level.max()) + 1 if n_layers else 0

    def arrange(per_row, level, vis, least: float = style.layer_gap, folded=(False,) * n_layers):
        """(width, depth) of every layer and the height of every level; `folded`: grid layers wrapped
        for being far wider than the others (their gaps allow for a steeper view)."""
        ext = np.array([_extent(graph, i, per_row[i], style) for i in range(n_layers)]).reshape(-1, 2)
        need = np.zeros(int(level.max()) + 1 if n_layers else 0)  # least gap next to each level
        for i in range(n_layers):
            if vis[i]:
                ratio = style.folded_gap_per_depth if folded[i] else style.gap_per_depth
                need[level[i]] = max(need[level[i]], ratio * ext[i, 1])
        gaps = np.maximum(least, np.maximum(need[:-1], need[1:]))
        return ext, np.concatenate([[0.0], np.cumsum(gaps)])

    per_row = [
        _grid_per_row(x.shape[0], style) if x.is_grid else _vector_per_row(x.count, style) for x in layers
    ]
    # A layer far wider than the network is tall would leave every sheet a sliver when fitted.  The
    # height is the whole network's, so hiding layers never rearranges the others.
    every = [True] * n_layers
    ext_full, y_full = arrange(per_row, _levels(sources, every), every)
    width_cap = style.max_aspect * max(float(y_full[-1]), style.layer_gap)
    grid_cap = style.max_width_share * float(np.median(ext_full[:, 0])) if n_layers else width_cap
    narrowed = [
        _narrowed(graph, i, per_row[i], min(width_cap, grid_cap) if x.is_grid else width_cap, style)
        for i, x in enumerate(layers)
    ]
    folded = [narrowed[i] != per_row[i] and ext_full[i, 0] <= width_cap for i in range(n_layers)]
    per_row = narrowed
    # The least gap follows the whole network's median one (all layers shown, so hiding one leaves the
    # others' spacing alone): a network of even gaps, like LeNet's, keeps them.
    _, y_full = arrange(per_row, _levels(sources, every), every, style.layer_gap, folded)
    median_gap = float(np.median(np.diff(y_full))) if len(y_full) > 1 else style.layer_gap
    least = max(style.layer_gap, style.min_gap_share * median_gap)
    ext, y_of_level = arrange(per_row, level, vis, least, folded)

    # Left to right on each level, the spine held at X = 0 (its weight dwarfs the others').
    spine = _spine(graph, sources, level)
    x_centre = np.zeros(n_layers)
    for lv in range(n_levels):
        members = [i for i in range(n_layers) if level[i] == lv]
        want = {}
        for i in members:
            srcs = sorted({s for s, _, _ in sources[i]})
            want[i] = 0.0 if i in spine or not srcs else float(np.mean(x_centre[srcs]))
        # Hidden layers take no room: they stay where they would be, drawn or not.
        for i in members:
            x_centre[i] = want[i]
        shown = sorted((i for i in members if vis[i]), key=lambda i: (want[i], i))
        if len(shown) > 1:
            weight = np.array([1e6 if i in spine else 1.0 for i in shown])
            xs = _pack(np.array([want[i] for i in shown]), ext[shown, 0], weight, style.branch_gap)
            x_centre[shown] = xs

    # A deep network folds into columns (its spines at X = x_off of their levels).
    x_off, runs, name_room = np.zeros(n_levels), [(0, n_levels - 1)], 0.0
    if n_levels > 1:
        half = ext[:, 0] / 2
        row_lo, row_hi, row_depth = np.zeros(n_levels), np.zeros(n_levels), np.zeros(n_levels)
        row_name, row_left = np.zeros(n_levels), np.full(n_levels, np.inf)
        for i in range(n_layers):
            if vis[i] and x_centre[i] - half[i] < row_left[level[i]]:  # the leftmost names its level
                row_left[level[i]] = x_centre[i] - half[i]
                row_name[level[i]] = len(layers[i].name) * style.name_char_px
        for i in range(n_layers):
            if vis[i]:
                row_depth[level[i]] = max(row_depth[level[i]], ext[i, 1])
                row_lo[level[i]] = min(row_lo[level[i]], x_centre[i] - half[i])
                # arcs run on the right: room for a few nested ones
                room = style.arc_margin + 3 * style.arc_spacing
                row_hi[level[i]] = max(row_hi[level[i]], x_centre[i] + half[i] + room)
        cuts = _clean_cuts(sources, level, n_levels)
        x_off, y_of_level, runs, name_room = _fold(
            row_lo, row_hi, row_depth, row_name, y_of_level, cuts, style
        )
        x_centre += x_off[level]

    # Centre the stack vertically so the orbit target (origin) sits in the middle of the network.
    if n_layers:
        node = np.array(
            [
                style.grid_node if x.is_grid else _vector_pitch(graph, i, style)[1]
                for i, x in enumerate(layers)
            ]
        )
        y_layer = y_of_level[level]
        y_of_level = y_of_level - ((y_layer - node / 2).min() + (y_layer + node / 2).max()) / 2
    n = graph.total_nodes
    positions = np.empty((n, 3), np.float32)
    sizes = np.empty(n, np.float32)
    layer_index = np.empty(n, np.int32)
    bounds = np.zeros((n_layers, 2, 3), np.float32)
    for i, layer in enumerate(layers):
        out, y = positions[layer.start : layer.stop], float(y_of_level[level[i]])
        if layer.is_grid:
            lo, hi = _grid_nodes(layer, per_row[i], style, out, float(x_centre[i]), y)
        else:
            pitch, _ = _vector_pitch(graph, i, style)
            lo, hi = _vector_nodes(layer.count, per_row[i], pitch, out, float(x_centre[i]), y)
        sizes[layer.start : layer.stop] = node[i]
        layer_index[layer.start : layer.stop] = i
        bounds[i, 0] = lo.astype(np.float32) - node[i] / 2
        bounds[i, 1] = hi.astype(np.float32) + node[i] / 2
    arcs = _route_arcs(sources, level, vis, bounds, y_of_level, style)
    links = _links(sources, level, vis, bounds, arcs, x_off, y_of_level, runs, style)
    frames = tuple(
        (i, _frame(bounds[i, 0], bounds[i, 1], style.frame_margin))
        for i, layer in enumerate(layers)
        if layer.kind == "opaque"
    )
    return Layout(graph, positions, sizes, layer_index, bounds, level, arcs, links, frames, name_room)
