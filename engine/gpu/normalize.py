"""Activation -> colour range: the lo / hi of each layer that the node shader maps to t = 0 / 1.

Pure numpy; the scene picks the mode (per layer, or one range for the whole network) and passes
the result to NodeBatch.set_ranges.  Works on a Dag (a NetSpec goes through `as_dag` first): a layer
is a contiguous range of node ids, a grid layer's maps its channels.
"""

from __future__ import annotations

import numpy as np
from convscope.engine.graph.dag import Dag


def layer_ranges(dag: Dag, acts: np.ndarray, mode: str = "layer") -> np.ndarray:
    """(L, 2) float32 [lo, hi] per layer of `dag` from the flat activations `acts` (N,).

    mode "layer": each layer spans its own min..max; "global": every layer gets the network's
    min..max.  NaN and inf are ignored (the shader gives them colormaps.NONFINITE, and one inf must not
    flatten the rest of its layer); a constant layer gets hi = lo + 1, so it shows the low colour.
    """
    if mode not in ("layer", "global"):
        raise ValueError(f"unknown normalisation mode {mode!r} (expected 'layer' or 'global')")
    return all_ranges(dag, acts)[mode]


def all_ranges(dag: Dag, acts: np.ndarray) -> dict[str, np.ndarray]:
    """Both modes of layer_ranges from one pass over the activations: {"layer": ..., "global": ...}."""
    acts = np.asarray(acts, dtype=np.float32).reshape(-1)
    if len(acts) != dag.total_nodes:
        raise ValueError(f"{len(acts)} activations for {dag.total_nodes} nodes of {dag.model}")
    acts = np.where(np.isfinite(acts), acts, np.float32(np.nan))  # fmin / fmax skip NaN
    starts = np.array([layer.start for layer in dag.layers])
    lo = np.fmin.reduceat(acts, starts)
    hi = np.fmax.reduceat(acts, starts)
    out = {}
    for mode in ("layer", "global"):
        a, b = lo.copy(), hi.copy()
        if mode == "global":
            a[:] = np.nanmin(lo) if np.isfinite(lo).any() else 0.0
            b[:] = np.nanmax(hi) if np.isfinite(hi).any() else 1.0
        a = np.where(np.isfinite(a), a, 0.0)
        b = np.where(np.isfinite(b), b, a + 1.0)
        b = np.where(b - a > 1e-12, b, a + 1.0)
        out[mode] = np.stack([a, b], axis=1).astype(np.float32)
    return out


def robust_ranges(dag: Dag, acts: np.ndarray, lo_q: float = 1.0, hi_q: float = 99.0) -> np.ndarray:
    """(L, 2) float32 [lo, hi] per layer that one strong map cannot monopolise.  A grid layer spans its min
    to a typical map's peak: the median of the maxima of its maps that carry any signal, so about half of
    them reach the top colour and the rest show in the middle, instead of all but the strongest lying at
    the bottom colour.  Other layers span their `lo_q` to `hi_q` percentiles.  Values beyond the range show
    the end colours.  NaNs are ignored; where the statistic collapses the layer keeps its min..max (and a
    constant layer lo..lo + 1)."""
    acts = np.asarray(acts, dtype=np.float32).reshape(-1)
    if len(acts) != dag.total_nodes:
        raise ValueError(f"{len(acts)} activations for {dag.total_nodes} nodes of {dag.model}")
    out = layer_ranges(dag, acts, "layer")
    for i, layer in enumerate(dag.layers):
        v = acts[layer.start : layer.stop]
        lo = float(out[i, 0])
        if layer.is_grid and layer.shape[0] > 1:
            with np.errstate(invalid="ignore"):
                peaks = np.nanmax(np.where(np.isfinite(v), v, np.nan).reshape(layer.shape[0], -1), axis=1)
            peaks = peaks[np.isfinite(peaks) & (peaks > lo + 1e-12)]
            hi = float(np.median(peaks)) if len(peaks) else lo
        else:
            f = v[np.isfinite(v)]
            if len(f) < 2:
                continue
            lo, hi = (float(x) for x in np.percentile(f, [lo_q, hi_q]))
        if hi - lo > 1e-12:
            out[i] = (lo, hi)
    return out


def per_map(dag: Dag, acts: np.ndarray) -> np.ndarray:
    """The activations with every feature map of a grid layer scaled to its own min..max (0..1), other
    layers to theirs: shown over a 0..1 range, each map uses the whole colormap.  A constant map gives 0."""
    acts = np.asarray(acts, dtype=np.float32).reshape(-1)
    if len(acts) != dag.total_nodes:
        raise ValueError(f"{len(acts)} activations for {dag.total_nodes} nodes of {dag.model}")
    out = np.empty_like(acts)
    for layer in dag.layers:
        v = acts[layer.start : layer.stop]
        maps = v.reshape(layer.shape[0], -1) if layer.is_grid else v.reshape(1, -1)
        with np.errstate(invalid="ignore"):
            lo = np.nanmin(np.where(np.isfinite(maps), maps, np.nan), axis=1, keepdims=True)
            hi = np.nanmax(np.where(np.isfinite(maps), maps, np.nan), axis=1, keepdims=True)
        span = np.where(hi - lo > 1e-12, hi - lo, np.inf)
        out[layer.start : layer.stop] = np.nan_to_num((maps - lo) / span, nan=0.0).reshape(-1)
    return out
