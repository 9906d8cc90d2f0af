"""Activation -> colour range: the lo / hi of each layer that the node shader maps to t = 0 / 1.

Pure numpy; the scene picks the mode (per layer, or one range for the whole network) and passes
the result to NodeBatch.set_ranges.
"""

from __future__ import annotations

import numpy as np
from convscope.engine.graph.spec import NetSpec


def layer_ranges(spec: NetSpec, acts: np.ndarray, mode: str = "layer") -> np.ndarray:
    """(L, 2) float32 [lo, hi] per layer of `spec` from the flat activations `acts` (N,).

    mode "layer": each layer spans its own min..max; "global": every layer gets the network's
    min..max.  NaN and inf are ignored (the shader gives them colormaps.NONFINITE, and one inf must not
    flatten the rest of its layer); a constant layer gets hi = lo + 1, so it shows the low colour.
    """
    if mode not in ("layer", "global"):
        raise ValueError(f"unknown normalisation mode {mode!r} (expected 'layer' or 'global')")
    return all_ranges(spec, acts)[mode]


def all_ranges(spec: NetSpec, acts: np.ndarray) -> dict[str, np.ndarray]:
    """Both modes of layer_ranges from one pass over the activations: {"layer": ..., "global": ...}."""
    acts = np.asarray(acts, dtype=np.float32).reshape(-1)
    if len(acts) != spec.total_nodes:
        raise ValueError(f"{len(acts)} activations for {spec.total_nodes} nodes of {spec.model}")
    acts = np.where(np.isfinite(acts), acts, np.float32(np.nan))  # fmin / fmax skip NaN
    starts = np.array([layer.start for layer in spec.layers])
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
