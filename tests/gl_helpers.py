"""Helpers for the headless GL tests: torch-free specs of Harley's two networks, a shared EGL
context (or a skip where there is none), and an offscreen frame of a SceneRenderer.

The specs come from models/specs.py, which does not import torch.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from convscope.engine.graph.spec import NetSpec
from convscope.models.specs import lenet_spec, mlp_spec  # noqa: F401


@functools.cache
def _context():
    from convscope.engine.gpu.context import GLVersionError, create_headless

    try:
        return create_headless()
    except GLVersionError as exc:
        return exc


def gl_context():
    """The process-wide headless context; skips the test where EGL / OpenGL 3.3 is missing."""
    ctx = _context()
    if isinstance(ctx, Exception):
        pytest.skip(f"no headless OpenGL: {ctx}")
    return ctx


def smooth_activations(spec: NetSpec, seed: int = 0) -> np.ndarray:
    """Plausible-looking activations: smooth blobs in grid layers, sparse ReLU-like vectors, a
    peaked softmax at the output."""
    rng = np.random.default_rng(seed)
    out = np.zeros(spec.total_nodes, np.float32)
    for layer in spec.layers:
        if layer.is_grid:
            c, h, w = layer.shape
            yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
            maps = []
            for _ in range(c):
                fx, fy, ph = rng.uniform(1, 4), rng.uniform(1, 4), rng.uniform(0, 6.3)
                maps.append(np.maximum(0, np.sin(fx * 6.3 * xx + ph) * np.cos(fy * 6.3 * yy)))
            a = np.stack(maps)
        elif layer.kind == "output":
            logits = rng.normal(0, 1, layer.count)
            logits[rng.integers(layer.count)] += 4
            a = np.exp(logits) / np.exp(logits).sum()
        else:
            a = np.maximum(0, rng.normal(0, 1, layer.count))
        out[layer.start : layer.stop] = a.reshape(-1)
    return out


def resnet18_shaped_dag(classes: int = 10):
    """A Dag with the layers and shapes that models/trace.py gives torchvision's resnet18 at 3x224x224
    (32 layers, 3,588,106 nodes: every conv, pool and residual add a layer), built without torch.  Edges
    are left out: layouts and renderers need the shapes only."""
    from convscope.engine.graph.dag import Dag, DagLayer

    layers = [
        DagLayer("input", "input", (3, 224, 224)),
        DagLayer("conv1", "conv", (64, 112, 112)),
        DagLayer("maxpool", "pool", (64, 56, 56)),
    ]
    for stage, (c, s) in enumerate(((64, 56), (128, 28), (256, 14), (512, 7)), start=1):
        for block in (0, 1):
            name = f"layer{stage}.{block}"
            layers += [DagLayer(f"{name}.conv{k}", "conv", (c, s, s)) for k in (1, 2)]
            if stage > 1 and block == 0:
                layers.append(DagLayer(f"{name}.downsample.0", "conv", (c, s, s)))
            layers.append(DagLayer(f"{name}.add", "add", (c, s, s)))
    layers += [DagLayer("avgpool", "pool", (512, 1, 1)), DagLayer("fc", "dense", (classes,))]
    return Dag.build("resnet18", layers)


def release_framebuffer(ctx, fbo) -> None:
    """Release `fbo`, handing the binding back to framebuffer 0 first when it is the bound one: moderngl
    re-binds the current framebuffer after making another, and a deleted one there is a
    GL_INVALID_OPERATION that a later test on the shared context would be blamed for."""
    if ctx.fbo is fbo:
        ctx.detect_framebuffer(0).use()
    fbo.release()
