"""Architecture surgery (models/surgery.py) checked against networks and optimizer states built by hand.

- adding a filter leaves the outputs unchanged;
- removing a filter equals the same network built from hand-sliced weights;
- the optimizer state follows: SGD, Adam and Adadelta update element by element, so after an edit that does
  not change the loss, one step must move every kept weight exactly as it moves in the unedited network;
- adding a conv layer starts as the identity (its ReLU map equals its input); the head is block-summed;
- removing a conv layer equals the network built by hand from the rules in the module docstring;
- refused edits raise SurgeryError with the reason and change nothing.

Small widths (4, 5, 6) keep it fast; one test uses the paper's 16-20-20 model.
Run: python -m pytest tests/test_surgery.py -q
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convscope.engine.graph.spec import NetSpec
from convscope.models.checkpoint import optimizer_state_by_name
from convscope.models.revacnn import Arch, RevaCNN, node_count
from convscope.models.surgery import (
    SurgeryError,
    add_conv_layer,
    add_filter,
    refit_head,
    remove_conv_layer,
    remove_filter,
)

torch.set_num_threads(1)

ARCH = Arch(in_channels=3, size=32, widths=(4, 5, 6))
OPTIMIZERS = ("sgd", "adam", "adadelta")
TOL = {"rtol": 1e-5, "atol": 1e-6}  # a zero channel more can reorder a float sum; nothing else differs


def _net(seed: int = 0, arch: Arch = ARCH) -> RevaCNN:
    return RevaCNN(arch, generator=torch.Generator().manual_seed(seed))


def _batch(seed: int, n: int = 8, arch: Arch = ARCH) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + seed)
    x = torch.rand(n, arch.in_channels, arch.size, arch.size, generator=g)  # images in [0, 1]
    return x, torch.randint(0, arch.classes, (n,), generator=g)


def _opt(name: str, model: RevaCNN) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-3)
    return torch.optim.Adadelta(model.parameters(), lr=1.0, weight_decay=1e-3)


def _step(model: RevaCNN, opt: torch.optim.Optimizer, seed: int) -> float:
    x, y = _batch(seed, arch=model.spec)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def _trained(name: str, steps: int = 3, seed: int = 0, arch: Arch = ARCH):
    model = _net(seed, arch)
    opt = _opt(name, model)
    for s in range(steps):
        _step(model, opt, s)
    return model, opt


def _close(
    got: torch.Tensor, want: torch.Tensor, what: str, exact: bool = False, tol: float | None = None
) -> None:
    if exact:
        assert torch.equal(got, want), f"{what}: expected {want.flatten()[:6]}..., got {got.flatten()[:6]}..."
    else:
        kw = {"rtol": tol, "atol": tol} if tol else TOL
        torch.testing.assert_close(got, want, **kw, msg=lambda m: f"{what}: {m}")


def _out(model: RevaCNN, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


# -- hand-made references ----------------------------------------------------------------------------------
def _filter_slicer(arch: Arch, k: int, i: int) -> dict:
    """Per parameter name, the hand-written slice that drops filter i of conv layer k (and what reads it)."""
    keep = [j for j in range(arch.widths[k]) if j != i]
    fns = {f"convs.{k}.weight": lambda t: t[keep], f"convs.{k}.bias": lambda t: t[keep]}
    if k + 1 < len(arch.widths):
        fns[f"convs.{k + 1}.weight"] = lambda t: t[:, keep]
    else:
        side, w = arch.final_size, arch.widths[k]
        fns["head.weight"] = lambda t: t.reshape(t.shape[0], w, side, side)[:, keep].reshape(t.shape[0], -1)
    return fns


def _apply(fns: dict, tensors: dict) -> dict:
    return {n: fns.get(n, lambda t: t)(t).contiguous() for n, t in tensors.items()}


def _apply_state(fns: dict, shapes: dict, state: dict) -> dict:
    return {
        n: {k: (fns.get(n, lambda t: t)(v) if v.shape == shapes[n] else v) for k, v in entries.items()}
        for n, entries in state.items()
    }


def _same_state(got: dict, want: dict, what: str) -> None:
    assert got.keys() == want.keys(), f"{what}: expected state for {sorted(want)}, got {sorted(got)}"
    for n in want:
        assert got[n].keys() == want[n].keys(), (
            f"{what} {n}: expected keys {sorted(want[n])}, got {sorted(got[n])}"
        )
        for k in want[n]:
            _close(got[n][k], want[n][k], f"{what} {n}/{k}")


# -- the model itself --------------------------------------------------------------------------------------
def test_paper_model_describe_matches_forward_all() -> None:
    model = _net(0, Arch())
    x, _ = _batch(0, n=2, arch=Arch())
    acts = model.forward_all(x)
    layers = model.describe()
    assert [layer.name for layer in layers] == list(acts), (
        f"expected {list(acts)}, got {[x.name for x in layers]}"
    )
    for layer in layers:
        assert tuple(acts[layer.name].shape[1:]) == layer.shape, (
            f"{layer.name}: describe says {layer.shape}, forward_all {tuple(acts[layer.name].shape[1:])}"
        )
    _close(model(x), acts["output"], "forward vs forward_all", exact=True)
    spec = NetSpec.build("revacnn", layers)
    # The "about 31,500 nodes":
    # 3*32*32 + 16*32*32 + 16*16*16 + 20*16*16 + 20*8*8 + 20*8*8 + 20*4*4 + 10 = 31562
    assert spec.total_nodes == node_count(model.spec) == 31562, (
        f"expected 31562 nodes, got {spec.total_nodes}"
    )
    assert RevaCNN(model.arch).arch == model.arch == Arch().to_dict()


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b = _net(7), _net(7)
    after = torch.rand(3)
    _close(after, before, "global RNG after building nets from a generator", exact=True)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        _close(pa, pb, f"{name} with the same seed", exact=True)


# -- filters ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("layer", "index"), [(0, None), (1, 0), (2, 3), (2, None)])
def test_add_filter_keeps_outputs(layer: int, index: int | None) -> None:
    model, opt = _trained("sgd")
    x, _ = _batch(99)
    before = _out(model, x)
    i = add_filter(model, opt, layer, index=index, generator=torch.Generator().manual_seed(5))
    assert i == (ARCH.widths[layer] if index is None else index)
    want_widths = list(ARCH.widths)
    want_widths[layer] += 1
    assert list(model.widths) == want_widths, f"expected widths {want_widths}, got {list(model.widths)}"
    _close(_out(model, x), before, f"outputs after adding filter {i} to conv{layer + 1}")
    assert model.convs[layer].weight[i].abs().sum() > 0, "the new filter must get (small) random weights"
    if layer + 1 < len(model.convs):
        assert model.convs[layer + 1].weight[:, i].abs().sum() == 0, "its outgoing weights must be zero"
    acts = model.forward_all(x)
    assert tuple(acts[f"conv{layer + 1}"].shape[1:2]) == (want_widths[layer],)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("layer", [0, 2])
def test_add_filter_then_step_matches_unedited_step(name: str, layer: int) -> None:
    """Momentum / Adam moments / Adadelta averages carried over: kept weights step as if nothing happened."""
    model, opt = _trained(name)
    ref_model, ref_opt = copy.deepcopy((model, opt))
    i = add_filter(model, opt, layer, index=1, generator=torch.Generator().manual_seed(5))
    shapes = {n: p.shape for n, p in model.named_parameters()}
    for n, entries in optimizer_state_by_name(model, opt).items():
        for k, v in entries.items():
            assert v.shape == (() if k == "step" else shapes[n]), f"{n}/{k}: shape {tuple(v.shape)}"
    _step(model, opt, 50)
    _step(ref_model, ref_opt, 50)
    edited = model.spec
    fns = _filter_slicer(edited, layer, i)  # drop the new filter again, by hand
    got = _apply(fns, dict(model.named_parameters()))
    for n, want in ref_model.named_parameters():
        _close(
            got[n].detach(), want.detach(), f"{name}: {n} one step after adding filter {i} to conv{layer + 1}"
        )
    got_state = _apply_state(fns, shapes, optimizer_state_by_name(model, opt))
    _same_state(got_state, optimizer_state_by_name(ref_model, ref_opt), f"{name} state")


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_remove_filter_equals_hand_sliced_network(layer: int) -> None:
    model, opt = _trained("sgd")
    i = 2
    fns = _filter_slicer(ARCH, layer, i)
    widths = list(ARCH.widths)
    widths[layer] -= 1
    ref = RevaCNN(Arch(ARCH.in_channels, ARCH.size, tuple(widths), ARCH.classes))
    ref.load_state_dict(_apply(fns, model.state_dict()))
    remove_filter(model, opt, layer, i)
    assert model.arch == ref.arch, f"expected arch {ref.arch}, got {model.arch}"
    x, _ = _batch(98)
    _close(_out(model, x), _out(ref, x), f"outputs after removing filter {i} of conv{layer + 1}", exact=True)


@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("layer", [1, 2])
def test_remove_filter_optimizer_state_sliced_and_steps_like_unedited(name: str, layer: int) -> None:
    model, opt = _trained(name)
    i = 1
    # Make filter i irrelevant to the loss: then the unedited network is a reference for the edited one.
    with torch.no_grad():
        if layer + 1 < len(model.convs):
            model.convs[layer + 1].weight[:, i] = 0
        else:
            side = ARCH.final_size
            model.head.weight.view(ARCH.classes, ARCH.widths[layer], side, side)[:, i] = 0
    ref_model, ref_opt = copy.deepcopy((model, opt))
    shapes = {n: p.shape for n, p in model.named_parameters()}
    fns = _filter_slicer(ARCH, layer, i)
    want_state = _apply_state(fns, shapes, optimizer_state_by_name(model, opt))
    remove_filter(model, opt, layer, i)
    _same_state(optimizer_state_by_name(model, opt), want_state, f"{name} state right after the edit")

    _step(model, opt, 60)
    _step(ref_model, ref_opt, 60)
    want = _apply(fns, {n: p.detach() for n, p in ref_model.named_parameters()})
    for n, p in model.named_parameters():
        _close(p.detach(), want[n], f"{name}: {n} one step after removing filter {i} of conv{layer + 1}")


# -- layers -------------------------------------------------------------------------------------------------
def _block_sum(head_w: torch.Tensor, channels: int, side: int) -> torch.Tensor:
    """Hand-written 2x2 block sum of the head weight, loop over blocks (reference for the avg_pool form)."""
    w = head_w.reshape(head_w.shape[0], channels, side, side)
    half = side // 2
    out = torch.zeros(w.shape[0], channels, half, half)
    for r in range(half):
        for c in range(half):
            out[:, :, r, c] = w[:, :, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2].sum(dim=(2, 3))
    return out.reshape(w.shape[0], -1)


@pytest.mark.parametrize("position", [0, 1, 3])
def test_add_conv_layer_starts_as_identity(position: int) -> None:
    model, opt = _trained("sgd")
    x, _ = _batch(97)
    old = {k: v.detach() for k, v in model.forward_all(x).items()}
    old_state = {k: v.clone() for k, v in model.state_dict().items()}
    cin = ARCH.in_channels if position == 0 else ARCH.widths[position - 1]
    add_conv_layer(model, opt, position, cin, generator=torch.Generator().manual_seed(3))
    assert list(model.widths) == [*ARCH.widths[:position], cin, *ARCH.widths[position:]]
    new = {k: v.detach() for k, v in model.forward_all(x).items()}
    feeding = "input" if position == 0 else f"pool{position}"
    _close(new[f"conv{position + 1}"], old[feeding], f"new conv{position + 1} vs its input {feeding}")
    # Later convs keep their weights; the head is block-summed.
    for j in range(position, len(ARCH.widths)):
        _close(
            model.convs[j + 1].weight.detach(),
            old_state[f"convs.{j}.weight"],
            f"conv{j + 2} weight",
            exact=True,
        )
    want_head = _block_sum(old_state["head.weight"], ARCH.widths[-1], ARCH.final_size)
    _close(model.head.weight.detach(), want_head, "head weight (2x2 block sums)")
    if position == len(ARCH.widths):  # the whole tail by hand: identity, max pool, block-summed head
        logits = F.linear(F.max_pool2d(old["pool3"], 2).flatten(1), want_head, old_state["head.bias"])
        _close(new["output"], logits, "logits after appending an identity layer")


def _block_constant(n: int, channels: int, side: int, seed: int) -> torch.Tensor:
    """Non-negative maps that are constant on every 2x2 block (what the head rules are exact for)."""
    small = torch.rand(n, channels, side // 2, side // 2, generator=torch.Generator().manual_seed(seed))
    return small.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def test_head_rules_are_exact_on_block_constant_maps() -> None:
    """Appending an identity layer, or removing the last layer, keeps the output for maps constant on 2x2
    blocks: the head's weights are summed over (or spread across) exactly those blocks."""
    arch = Arch(3, 32, (4, 6, 6))
    model, opt = _trained("sgd", arch=arch)
    a = _block_constant(5, 6, arch.final_size, seed=1)  # what reaches the head: (5, 6, 4, 4)
    with torch.no_grad():
        want = model.head(a.flatten(1))
        add_conv_layer(model, opt, 3, 6)
        got = model.head(F.max_pool2d(F.relu(model.convs[3](a)), 2).flatten(1))
    _close(got, want, "head after appending an identity layer, on block-constant maps")

    model, opt = _trained("sgd", arch=arch)
    b = _block_constant(5, 6, 2 * arch.final_size, seed=2)  # the removed layer's input: (5, 6, 8, 8)
    with torch.no_grad():
        want = model.head(F.max_pool2d(b, 2).flatten(1))
        remove_conv_layer(model, opt, 2)
        got = model.head(b.flatten(1))
    _close(got, want, "head after removing the last layer, on block-constant maps")


def test_add_conv_layer_extra_filters_change_nothing() -> None:
    model, _ = _trained("sgd")
    x, _ = _batch(95)
    same, wider = copy.deepcopy(model), copy.deepcopy(model)
    add_conv_layer(same, None, 2, 5)  # conv2 has 5 filters: identity on all of them
    add_conv_layer(wider, None, 2, 8, generator=torch.Generator().manual_seed(2))  # + 3 random filters
    _close(_out(wider, x), _out(same, x), "a wider identity layer (extra filters have zero outgoing weights)")
    narrower = copy.deepcopy(model)
    add_conv_layer(narrower, None, 2, 2)  # keeps 2 of 5 channels: allowed, documented as lossy
    assert list(narrower.widths) == [4, 5, 2, 6] and _out(narrower, x).shape == (8, 10)


def test_refit_head_is_least_squares_and_keeps_calibration_logits() -> None:
    model, opt = _trained("sgd", steps=5)
    images, _ = _batch(90, n=64)
    want = _out(model, images)
    add_conv_layer(model, opt, 3, 6, calibration=images)
    refitted = _out(model, images)
    plain, _ = _trained("sgd", steps=5)
    add_conv_layer(plain, None, 3, 6)
    err_refit, err_plain = (refitted - want).pow(2).mean(), (_out(plain, images) - want).pow(2).mean()
    assert err_refit < err_plain, (
        f"calibration logits: squared error {err_refit:.3g} re-fitted, {err_plain:.3g} not"
    )

    refit_head(model, images, want, ridge=0.0)  # 64 images, 6*2*2 + 1 = 25 unknowns: plain least squares
    f = model.head_input(images).detach().double().numpy()
    x = np.concatenate([f, np.ones((len(f), 1))], axis=1)
    theta = np.linalg.lstsq(x, want.double().numpy(), rcond=None)[0]
    # Compared as fitted logits: those are unique even where near-collinear features leave theta loose.
    fitted = torch.from_numpy(x @ theta).float()
    _close(_out(model, images), fitted, "logits of the re-fitted head vs numpy lstsq", tol=1e-4)
    with pytest.raises(SurgeryError, match="calibration"):
        add_conv_layer(model, opt, 0, 3, calibration=torch.zeros(2, 1, 32, 32))
    assert len(model.convs) == 4


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_remove_conv_layer_equals_hand_built_network(layer: int) -> None:
    arch = Arch(3, 28, (4, 5, 6))  # 28 -> 14 -> 7 -> 3: max pooling floors, the head gains a zero row
    model, opt = _trained("adam", arch=arch)
    old = {k: v.clone() for k, v in model.state_dict().items()}
    widths = arch.widths[:layer] + arch.widths[layer + 1 :]
    new_arch = Arch(3, 28, widths)
    cin = 3 if layer == 0 else arch.widths[layer - 1]
    ref = {}
    for j, src in enumerate([i for i in range(3) if i != layer]):
        w = old[f"convs.{src}.weight"]
        if src == layer + 1:  # reads the removed layer's input now: first channels kept, the rest zero
            fixed = torch.zeros(w.shape[0], cin, 5, 5)
            m = min(cin, w.shape[1])
            fixed[:, :m] = w[:, :m]
            w = fixed
        ref[f"convs.{j}.weight"], ref[f"convs.{j}.bias"] = w, old[f"convs.{src}.bias"]
    head = old["head.weight"].reshape(10, arch.widths[-1], arch.final_size, arch.final_size)
    c_new, s_new = new_arch.widths[-1], new_arch.final_size
    spread = torch.zeros(10, c_new, s_new, s_new)
    m = min(c_new, arch.widths[-1])
    for r in range(arch.final_size):
        for c in range(arch.final_size):
            for dr in (0, 1):
                for dc in (0, 1):
                    spread[:, :m, 2 * r + dr, 2 * c + dc] = head[:, :m, r, c] / 4
    ref["head.weight"], ref["head.bias"] = spread.reshape(10, -1), old["head.bias"]
    want = RevaCNN(new_arch)
    want.load_state_dict(ref)

    remove_conv_layer(model, opt, layer)
    assert model.arch == new_arch.to_dict(), f"expected {new_arch.to_dict()}, got {model.arch}"
    x = torch.rand(4, 3, 28, 28, generator=torch.Generator().manual_seed(9))
    _close(_out(model, x), _out(want, x), f"outputs after removing conv{layer + 1}")
    held = {id(p) for p in opt.param_groups[0]["params"]}
    assert held == {id(p) for p in model.parameters()} and set(map(id, opt.state)) <= held, (
        "stale optimizer state"
    )


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_layer_edits_carry_optimizer_state(name: str) -> None:
    model, opt = _trained(name)
    before = optimizer_state_by_name(model, opt)
    add_conv_layer(model, opt, 1, 5, generator=torch.Generator().manual_seed(1))  # widths 4, 5 (new), 5, 6
    after = optimizer_state_by_name(model, opt)
    assert "convs.1.weight" not in after, "a new layer starts without optimizer state"
    for src, dst in (("convs.0.weight", "convs.0.weight"), ("convs.2.weight", "convs.3.weight")):
        _same_state({dst: after[dst]}, {dst: before[src]}, f"{name}: {src} moved to {dst}")
    # conv (old index 1, reading 4 channels) now reads the 5-channel new layer: 4 kept, one zero
    for k, v in after["convs.2.weight"].items():
        if k != "step":
            _close(v[:, :4], before["convs.1.weight"][k], f"{name}: convs.2.weight/{k} kept channels")
            assert v[:, 4:].abs().sum() == 0, f"{name}: convs.2.weight/{k} new channel must start at zero"
    for k, v in after["head.weight"].items():
        if k != "step":  # gradients of a block-summed weight are block means: so is its state
            want = _block_sum(before["head.weight"][k], 6, 4) / 4
            _close(v, want, f"{name}: head.weight/{k} (2x2 block means)")
    _step(model, opt, 70)
    remove_conv_layer(model, opt, 1)
    _step(model, opt, 71)
    for n, entries in optimizer_state_by_name(model, opt).items():
        p = dict(model.named_parameters())[n]
        for k, v in entries.items():
            assert v.shape == (() if k == "step" else p.shape), f"{name}: {n}/{k} is {tuple(v.shape)}"
    assert torch.isfinite(model(_batch(0)[0])).all()


def test_random_edit_sequence_keeps_training() -> None:
    g = torch.Generator().manual_seed(11)
    model, opt = _trained("adam", steps=1)
    for s in range(12):
        op = int(torch.randint(0, 4, (1,), generator=g))
        n = len(model.convs)
        k = int(torch.randint(0, n, (1,), generator=g))
        try:
            if op == 0:
                add_filter(model, opt, k, generator=g)
            elif op == 1:
                remove_filter(model, opt, k, int(torch.randint(0, model.widths[k], (1,), generator=g)))
            elif op == 2:
                add_conv_layer(model, opt, int(torch.randint(0, n + 1, (1,), generator=g)), 3, generator=g)
            else:
                remove_conv_layer(model, opt, k)
        except SurgeryError:
            pass  # refused edits are part of the sequence
        loss = _step(model, opt, 100 + s)
        assert torch.isfinite(torch.tensor(loss)), f"edit {s} (op {op}) gave loss {loss}"
        assert RevaCNN(model.arch).arch == model.arch


# -- refused edits -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("arch", "edit", "words"),
    [
        (Arch(3, 32, (4, 1)), lambda m, o: remove_filter(m, o, 1, 0), "single filter left"),
        (Arch(3, 32, (4,)), lambda m, o: remove_conv_layer(m, o, 0), "only conv layer"),
        (Arch(3, 8, (2, 2, 2)), lambda m, o: add_conv_layer(m, o, 0, 2), "below 1x1"),
        (ARCH, lambda m, o: add_filter(m, o, 3), "layer_idx"),
        (ARCH, lambda m, o: add_filter(m, o, -1), "layer_idx"),
        (ARCH, lambda m, o: remove_filter(m, o, 0, 4), "filter_idx"),
        (ARCH, lambda m, o: add_filter(m, o, True), "layer_idx"),
        (ARCH, lambda m, o: add_conv_layer(m, o, 0, 0), "width"),
        (ARCH, lambda m, o: add_conv_layer(m, o, 0, 257), "width"),
        (
            ARCH,
            lambda m, o: add_filter(m, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1), 0),
            "optim",
        ),
    ],
)
def test_refused_edits_change_nothing(arch: Arch, edit, words: str) -> None:
    model, opt = _trained("sgd", arch=arch, steps=1) if arch.size == 32 else (_net(0, arch), None)
    if opt is None:
        opt = _opt("sgd", model)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = optimizer_state_by_name(model, opt)
    params = list(opt.param_groups[0]["params"])
    with pytest.raises(SurgeryError, match=words):
        edit(model, opt)
    assert model.arch == arch.to_dict(), f"expected {arch.to_dict()} after a refused edit, got {model.arch}"
    for k, v in model.state_dict().items():
        _close(v, weights[k], f"{k} after a refused edit", exact=True)
    assert opt.param_groups[0]["params"] == params
    _same_state(optimizer_state_by_name(model, opt), state, "state after a refused edit")
