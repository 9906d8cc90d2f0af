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
    acts = np.asarray(acts, dtype=np.float32).reshape(-1)
    if len(acts) != spec.total_nodes:
        raise ValueError(f"{len(acts)} activations for {spec.total_nodes} nodes of {spec.model}")
    acts = np.where(np.isfinite(acts), acts, np.float32(np.nan))  # fmin / fmax skip NaN
    starts = np.array([layer.start for layer in spec.layers])
    lo = np.fmin.reduceat(acts, starts)
    hi = np.fmax.reduceat(acts, starts)
    if mode == "global":
        lo[:] = np.nanmin(lo) if np.isfinite(lo).any() else 0.0
        hi[:] = np.nanmax(hi) if np.isfinite(hi).any() else 1.0
    lo = np.where(np.isfinite(lo), lo, 0.0)
    hi = np.where(np.isfinite(hi), hi, lo + 1.0)
    hi = np.where(hi - lo > 1e-12, hi, lo + 1.0)
    return np.stack([lo, hi], axis=1).astype(np.float32)
