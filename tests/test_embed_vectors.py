"""The embedding view's vectors (features/embedding/vectors.py) against a direct torch computation.

The reference below rebuilds each network's forward pass from F.conv2d / F.relu / F.max_pool2d with the
model's own parameters, keeps the chosen conv layer's map with retain_grad, and calls loss.backward() on
leaf copies of the weights: an independent path to the same four vectors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convscope.features.embedding.vectors import (
    KINDS,
    ImageVectors,
    conv_layers,
    filter_vectors,
    image_vectors,
    pooled_side,
)
from convscope.models.nets import LeNet
from convscope.models.revacnn import PADDING, POOL, Arch, RevaCNN

torch.set_num_threads(1)


def small_revacnn(seed: int = 0) -> RevaCNN:
    return RevaCNN(
        Arch(in_channels=3, size=16, widths=(4, 5, 6), classes=10), torch.Generator().manual_seed(seed)
    )


def lenet(seed: int = 0) -> LeNet:
    torch.manual_seed(seed)
    return LeNet()


def reference(net, layer_idx: int, x: torch.Tensor, y: torch.Tensor) -> dict[str, np.ndarray]:
    """The four kinds by hand: explicit ops, leaf weight copies, backward()."""
    if isinstance(net, RevaCNN):
        ws = [c.weight.detach().clone().requires_grad_(True) for c in net.convs]
        bs = [c.bias.detach() for c in net.convs]
        h, kept = x, None
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            h = F.relu(F.conv2d(h, w, b, padding=PADDING))
            if i == layer_idx:
                kept = h
                kept.retain_grad()
            h = F.max_pool2d(h, POOL)
        logits = F.linear(h.flatten(1), net.head.weight.detach(), net.head.bias.detach())
    else:  # LeNet
        convs = [net.conv1, net.conv2]
        ws = [c.weight.detach().clone().requires_grad_(True) for c in convs]
        h, kept = F.pad(x, (2, 2, 2, 2)), None
        for i, (w, c) in enumerate(zip(ws, convs, strict=True)):
            h = F.relu(F.conv2d(h, w, c.bias.detach()))
            if i == layer_idx:
                kept = h
                kept.retain_grad()
            h = F.max_pool2d(h, 2)
        h = F.relu(F.linear(h.flatten(1), net.fc1.weight.detach(), net.fc1.bias.detach()))
        h = F.relu(F.linear(h, net.fc2.weight.detach(), net.fc2.bias.detach()))
        logits = F.linear(h, net.output.weight.detach(), net.output.bias.detach())
    F.cross_entropy(logits, y).backward()
    w = ws[layer_idx]
    c = w.shape[0]
    return {
        "coefficients": w.detach().reshape(c, -1).numpy(),
        "filter_gradients": w.grad.reshape(c, -1).numpy(),
        "activations": kept.detach()[0].reshape(c, -1).numpy(),
        "activation_gradients": kept.grad[0].reshape(c, -1).numpy(),
    }


@pytest.mark.parametrize(
    "make, layer_idx, shape",
    [(small_revacnn, 0, (3, 16, 16)), (small_revacnn, 2, (3, 16, 16)), (lenet, 1, (1, 28, 28))],
)
def test_four_kinds_equal_a_direct_torch_computation(make, layer_idx, shape):
    net = make()
    g = torch.Generator().manual_seed(1)
    image = torch.rand(shape, generator=g)
    label = 3
    got = filter_vectors(net, layer_idx, image, label)
    ref = reference(net, layer_idx, image.unsqueeze(0), torch.tensor([label]))
    name, conv = conv_layers(net)[layer_idx]
    c_out, c_in, k, _ = conv.weight.shape
    assert got.layer == name and got.count == c_out and got.weight_shape == (c_in, k, k)
    acts = net.forward_all(image.unsqueeze(0))[name]
    assert got.map_shape == tuple(acts.shape[-2:])
    for kind in KINDS:
        expected = ref[kind]
        assert got[kind].shape == expected.shape, (
            f"{kind}: shape {got[kind].shape}, expected {expected.shape}"
        )
        assert got[kind].dtype == np.float32
        np.testing.assert_allclose(got[kind], expected, rtol=1e-4, atol=1e-6, err_msg=kind)
    assert np.abs(got["activation_gradients"]).sum() > 0, "a zero gradient would make the check vacuous"
    expected_loss = F.cross_entropy(net(image.unsqueeze(0)), torch.tensor([label])).item()
    assert got.loss == pytest.approx(expected_loss, rel=1e-5)
    assert all(p.grad is None for p in net.parameters()), "the trainer's .grad must stay untouched"


def test_uint8_images_no_grad_context_and_a_subset_of_kinds():
    net = small_revacnn()
    image = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():  # as inside a worker's inference loop
        got = filter_vectors(net, "conv2", image, 7, kinds=("activation_gradients", "coefficients"))
    ref = reference(net, 1, image.unsqueeze(0).float() / 255.0, torch.tensor([7]))
    assert list(got.vectors) == ["activation_gradients", "coefficients"]
    np.testing.assert_allclose(got["activation_gradients"], ref["activation_gradients"], rtol=1e-4, atol=1e-7)
    only_weights = filter_vectors(net, "conv2", image, 7, kinds=("coefficients",))
    np.testing.assert_array_equal(only_weights["coefficients"], ref["coefficients"])
    with pytest.raises(ValueError, match="unknown kinds"):
        filter_vectors(net, 0, image, 7, kinds=("weights",))
    with pytest.raises(ValueError, match="no conv layer"):
        filter_vectors(net, "pool1", image, 7)


def test_filter_gradients_of_a_batch():
    net = small_revacnn()
    g = torch.Generator().manual_seed(3)
    xb, yb = torch.rand(5, 3, 16, 16, generator=g), torch.tensor([0, 1, 2, 3, 4])
    got = filter_vectors(net, 1, xb[0], 0, kinds=("filter_gradients",), grad_batch=(xb, yb))
    ref = reference(net, 1, xb, yb)  # mean cross-entropy over the batch
    np.testing.assert_allclose(got["filter_gradients"], ref["filter_gradients"], rtol=1e-4, atol=1e-7)


def test_conv_layers_of_both_protocol_networks():
    assert [n for n, _ in conv_layers(small_revacnn())] == ["conv1", "conv2", "conv3"]
    assert [n for n, _ in conv_layers(lenet())] == ["conv1", "conv2"]


def test_image_vectors_flatten_and_pool_wide_layers():
    net = small_revacnn()
    g = torch.Generator().manual_seed(4)
    images = torch.randint(0, 256, (37, 3, 16, 16), dtype=torch.uint8, generator=g)
    seen = []
    small = image_vectors(net, images, "pool2", batch_size=10, progress=seen.append)
    with torch.no_grad():
        acts = net.forward_all(images.float() / 255.0)
    np.testing.assert_allclose(small, acts["pool2"].flatten(1).numpy(), rtol=1e-5, atol=1e-6)
    assert seen == [10 / 37, 20 / 37, 30 / 37, 1.0]
    # conv1: 4 x 16 x 16 = 1024 values > 300 -> 4 x 8 x 8 = 256.
    assert pooled_side(4, 16, 16, 300) == 8 and pooled_side(4, 16, 16, 1024) is None
    wide = image_vectors(net, images, "conv1", batch_size=16, max_dim=300)
    expected = F.adaptive_avg_pool2d(acts["conv1"], 8).flatten(1).numpy()
    assert wide.shape == (37, 256)
    np.testing.assert_allclose(wide, expected, rtol=1e-5, atol=1e-6)
    logits = image_vectors(net, images, "output")
    np.testing.assert_allclose(logits, acts["output"].numpy(), rtol=1e-5, atol=1e-6)


def test_image_vectors_in_steps_use_the_weights_of_the_start():
    net = small_revacnn()
    g = torch.Generator().manual_seed(5)
    images = torch.rand(25, 3, 16, 16, generator=g)
    expected = image_vectors(net, images, "pool3")
    job = ImageVectors(net, images, "pool3", batch_size=10)
    assert job.step() == pytest.approx(0.4) and not job.finished
    with torch.no_grad():  # training goes on between steps
        for p in net.parameters():
            p.add_(0.5)
    assert job.step() == pytest.approx(0.8)
    out = job.run()
    assert job.finished and job.step() == 1.0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(image_vectors(net, images, "pool3"), expected), "the edit had no effect"
