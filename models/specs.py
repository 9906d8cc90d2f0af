"""The layer lists of the shipped networks, torch-free, so tests and tools can build their NetSpecs
without importing torch.  models/nets.py's modules describe themselves with these."""

from __future__ import annotations

from convscope.engine.graph.spec import LayerSpec, NetSpec

LENET_LAYERS = (
    LayerSpec("input", "input", (1, 32, 32)),
    LayerSpec("conv1", "conv", (6, 28, 28), activation="relu", kernel=5),
    LayerSpec("pool1", "pool", (6, 14, 14), kernel=2, stride=2),
    LayerSpec("conv2", "conv", (16, 10, 10), activation="relu", kernel=5),
    LayerSpec("pool2", "pool", (16, 5, 5), kernel=2, stride=2),
    LayerSpec("fc1", "fc", (120,), activation="relu"),
    LayerSpec("fc2", "fc", (100,), activation="relu"),
    LayerSpec("output", "output", (10,), activation="softmax"),
)

MLP_LAYERS = (
    LayerSpec("input", "input", (1, 28, 28)),
    LayerSpec("fc1", "fc", (300,), activation="relu"),
    LayerSpec("fc2", "fc", (100,), activation="relu"),
    LayerSpec("output", "output", (10,), activation="softmax"),
)


def lenet_spec() -> NetSpec:
    return NetSpec.build("lenet", LENET_LAYERS)


def mlp_spec() -> NetSpec:
    return NetSpec.build("mlp", MLP_LAYERS)
