"""Dags for the layout tests, built by hand (no torch): a deep residual network of any number of
layers, and single wide layers.  Traced models come from tests/nets/ in the tests themselves."""

from __future__ import annotations

from convscope.engine.graph.dag import Dag, DagLayer, EdgeSet


def _conv(name: str, source: DagLayer, shape: tuple[int, ...], stride: int = 1) -> DagLayer:
    e = EdgeSet("conv", source.name, source.shape, kernel=(3, 3), stride=(stride, stride), padding=(1, 1))
    return DagLayer(name, "conv", shape, inputs=(e,))


def deep_dag(n_layers: int = 80, width: int = 16, side: int = 8) -> Dag:
    """A stem conv, then residual blocks (conv1, conv2, add; every fourth block starts with a
    stride-1 1x1 shortcut conv beside conv1), then a 10-unit dense layer: `n_layers` layers in all."""
    shape = (width, side, side)
    layers = [DagLayer("input", "input", (3, side, side))]
    layers.append(_conv("stem", layers[0], shape))
    block = 0
    while len(layers) < n_layers - 1:
        x = layers[-1]
        room = n_layers - 1 - len(layers)
        if room < 3:  # too few left for a block: plain convs
            layers.append(_conv(f"extra{room}", x, shape))
            continue
        conv1 = _conv(f"block{block}.conv1", x, shape)
        conv2 = _conv(f"block{block}.conv2", conv1, shape)
        skip = x
        new = [conv1, conv2]
        if block % 4 == 3 and room >= 4:
            skip = DagLayer(
                f"block{block}.shortcut",
                "conv",
                shape,
                inputs=(EdgeSet("conv", x.name, x.shape),),
            )
            new.append(skip)
        add = DagLayer(
            f"block{block}.add",
            "add",
            shape,
            inputs=(EdgeSet("add", conv2.name, shape), EdgeSet("add", skip.name, shape)),
        )
        layers += [*new, add]
        block += 1
    last = layers[-1]
    layers.append(DagLayer("fc", "dense", (10,), inputs=(EdgeSet("dense", last.name, last.shape),)))
    return Dag.build(f"deep{n_layers}", layers, output="fc")


def wide_dag(hidden: tuple[int, ...], maps: tuple[int, int, int] = (1, 28, 28)) -> Dag:
    """input (maps) -> dense layers of `hidden` units -> 10 outputs."""
    layers = [DagLayer("input", "input", maps)]
    for k, n in enumerate((*hidden, 10)):
        src = layers[-1]
        e = EdgeSet("dense", src.name, src.shape)
        layers.append(DagLayer(f"fc{k}" if k < len(hidden) else "out", "dense", (n,), inputs=(e,)))
    return Dag.build("wide", layers, output="out")


def wide_maps_dag(channels: int = 16, side: int = 224) -> Dag:
    """input 3 x side x side -> a conv of `channels` maps of side x side -> 10 outputs."""
    x = DagLayer("input", "input", (3, side, side))
    conv = _conv("conv", x, (channels, side, side))
    fc = DagLayer("fc", "dense", (10,), inputs=(EdgeSet("dense", "conv", conv.shape),))
    return Dag.build("widemaps", [x, conv, fc], output="fc")
