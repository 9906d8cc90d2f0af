"""Architecture surgery on a live RevaCNN and its optimizer: add / remove a filter, add / remove a conv layer.

Every edit keeps all learned weights that still have a place in the new network, and carries the optimizer
state (SGD `momentum_buffer`, Adam `exp_avg` / `exp_avg_sq` / `step`, Adadelta `square_avg` / `acc_delta` /
`step`) with them, sliced or padded exactly like the weights.  The edit replaces the affected nn.Parameters
and rewrites the optimizer's single parameter group to `list(model.parameters())`; per-parameter scalars
(`step`) are kept as they were.  Each function checks everything before it changes anything, so a refused
edit (SurgeryError, with the reason) leaves model and optimizer untouched.

Conv layers are numbered from 0 here (`layer_idx` 0 is the layer `describe()` calls "conv1").

What each edit keeps
--------------------
add_filter       Exact: the network's outputs do not change.  The new filter gets small random weights
                 (torch's default conv init, U(+-1/sqrt(fan_in))) and a zero bias; its outgoing weights
                 (the next conv's input channel, or its block of the linear head) are zero.  Its optimizer
                 state starts at zero.  With Adam the new entries share the tensor's `step`, so their first
                 updates are not bias-corrected (up to ~3x lr for a few steps).
remove_filter    Exact: the result equals the same network built from the hand-sliced weights.
add_conv_layer   The new layer starts as the identity on as many channels as it can: weight[j, j, 2, 2] = 1,
                 zero bias, for j < min(width, channels in).  Because its input is non-negative (an image in
                 [0, 1], or the output of ReLU + max pool), ReLU(conv(x)) == x for those channels.  Extra
                 filters (width > channels in) get random weights and zero outgoing weights, so they change
                 nothing; with width < channels in the layer drops the last channels, and the next layer's
                 weights for them.  The new layer's 2x2 max pool is the one unavoidable change: every later
                 map is half as wide.  Later convs keep their weights (a conv does not care about map size);
                 the linear head's weights are summed over each 2x2 block, which is exact where a map is
                 constant on those blocks and an approximation elsewhere (see "Re-fitting the head").
                 Optimizer state of the head is averaged over the same blocks (as its gradients would be);
                 the new layer's own state starts empty (Adam/Adadelta initialise it, `step` 0, next step).
remove_conv_layer  Not output-preserving (a real change of the function).  The next layer (conv or head)
                 now reads the removed layer's input: its weights for the first min(old, new) input
                 channels are kept, extra channels get zero weights.  The maps reaching the head are twice as
                 wide: each head weight is spread over its 2x2 block (divided by 4; a map constant on the
                 blocks gives the same output), optimizer state is repeated over the block, and a row/column
                 that max pooling's flooring had dropped gets zeros.

Re-fitting the head (layer edits only).  Real feature maps are not constant on 2x2 blocks, so the block rules
alone lose much of a trained net (on the built-in digits: 97% validation accuracy -> 39% for an appended
identity layer, ~1-10% for other layer edits).  Given `calibration` images, add_conv_layer and
remove_conv_layer then re-fit the linear head (weight and bias, in place) so that its logits on those images
match the logits before the edit in the least-squares sense, with a ridge pull towards the block-rule weights
(`refit_head`).  With 256 training images this keeps 86-97% on the digits.  After a re-fit every running
optimizer state (momentum, Adam's moments) is zeroed: it described the old weights, and carried over it
drove the first steps after an added layer into a blow-up at the default settings.  The re-fitted head
cannot undo what the pooling of an inserted layer does to the layers after it; `distill` then trains the
whole network for a few steps towards the old predictions on the same images (the trainer calls it).

Refused (SurgeryError): removing the last filter of a layer or the last conv layer, more than MAX_WIDTH
filters, a layer that would pool the maps below 1x1, out-of-range indices, and an optimizer that does not
hold exactly the model's parameters in one group.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from convscope.models.revacnn import KERNEL, MAX_WIDTH, PADDING, POOL, Arch, RevaCNN, new_conv
from torch import nn

Map = Callable[[torch.Tensor], torch.Tensor]


class SurgeryError(ValueError):
    """A refused edit; the message says why and what to do instead.  Nothing was changed."""


# -- tensor edits (the same function serves a weight and its optimizer state) -----------------------------
def _insert(t: torch.Tensor, dim: int, index: int, block: torch.Tensor) -> torch.Tensor:
    return torch.cat([t.narrow(dim, 0, index), block, t.narrow(dim, index, t.shape[dim] - index)], dim)


def _insert_zeros(t: torch.Tensor, dim: int, index: int) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = 1
    return _insert(t, dim, index, t.new_zeros(shape))


def _delete(t: torch.Tensor, dim: int, index: int) -> torch.Tensor:
    return torch.cat([t.narrow(dim, 0, index), t.narrow(dim, index + 1, t.shape[dim] - index - 1)], dim)


def _resize(t: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Keep the first min(n, old) entries along `dim`; pad with zeros up to n."""
    old = t.shape[dim]
    if n <= old:
        return t.narrow(dim, 0, n).clone()
    shape = list(t.shape)
    shape[dim] = n - old
    return torch.cat([t, t.new_zeros(shape)], dim)


def _on_head(channels: int, side: int, fn: Map) -> Map:
    """Lift a map on (classes, C, H, W) to the head's flat (classes, C*H*W) weight (flatten is C-order)."""

    def lifted(t: torch.Tensor) -> torch.Tensor:
        return fn(t.reshape(t.shape[0], channels, side, side)).flatten(1).contiguous()

    return lifted


def _shrink_blocks(scale: float) -> Map:
    """(.., H, W) -> (.., H//2, W//2): each 2x2 block summed (scale 4) or averaged (scale 1)."""
    return lambda t: F.avg_pool2d(t, POOL) * scale


def _grow_blocks(side: int, scale: float) -> Map:
    """(.., s, s) -> (.., side, side): each entry repeated over its 2x2 block times `scale`, zero-padded."""

    def grow(t: torch.Tensor) -> torch.Tensor:
        g = t.repeat_interleave(POOL, dim=-2).repeat_interleave(POOL, dim=-1) * scale
        pad = side - g.shape[-1]
        return F.pad(g, (0, pad, 0, pad)) if pad > 0 else g

    return grow


# -- parameter replacement with optimizer state ---------------------------------------------------------
def _check_optimizer(model: RevaCNN, optimizer: torch.optim.Optimizer | None) -> None:
    if optimizer is None:
        return
    groups = optimizer.param_groups
    held = [id(p) for p in groups[0]["params"]] if len(groups) == 1 else []
    if len(groups) != 1 or sorted(held) != sorted(id(p) for p in model.parameters()):
        raise SurgeryError(
            "surgery needs an optimizer with one parameter group holding exactly the model's parameters "
            f"(got {len(groups)} group(s)); build it as Optimizer(model.parameters(), ...)"
        )


def _swap(
    optimizer: torch.optim.Optimizer | None, module: nn.Module, attr: str, value: torch.Tensor, state_map: Map
) -> None:
    """Replace module.<attr> by a new Parameter holding `value`; map its per-element optimizer state."""
    old = getattr(module, attr)
    new = nn.Parameter(value.detach().contiguous(), requires_grad=old.requires_grad)
    setattr(module, attr, new)
    if optimizer is None:
        return
    state = optimizer.state.pop(old, None)
    if state:
        optimizer.state[new] = {
            k: state_map(v).contiguous() if torch.is_tensor(v) and v.shape == old.shape else v
            for k, v in state.items()
        }


def _sync(model: RevaCNN, optimizer: torch.optim.Optimizer | None) -> None:
    """Point the optimizer at the model's current parameters (in model order) and drop orphaned state."""
    if optimizer is None:
        return
    params = list(model.parameters())
    optimizer.param_groups[0]["params"] = params
    live = {id(p) for p in params}
    for p in [p for p in optimizer.state if id(p) not in live]:
        del optimizer.state[p]


def _edit(
    optimizer: torch.optim.Optimizer | None, module: nn.Module, attr: str, param_map: Map, state_map: Map
) -> None:
    _swap(optimizer, module, attr, param_map(getattr(module, attr).detach()), state_map)


# -- validation helpers -------------------------------------------------------------------------------------
def _check_int(name: str, value, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise SurgeryError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return value


def _check_layer(model: RevaCNN, layer_idx) -> int:
    n = len(model.convs)
    return _check_int(f"layer_idx (conv layers are 0..{n - 1})", layer_idx, 0, n - 1)


def _layer_name(k: int) -> str:
    return f"conv{k + 1}"


# -- the four edits -----------------------------------------------------------------------------------------
def add_filter(
    model: RevaCNN,
    optimizer: torch.optim.Optimizer | None,
    layer_idx: int,
    *,
    index: int | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Add one filter to conv layer `layer_idx` at position `index` (default: last); outputs are unchanged.

    Returns the new filter's index.  `generator` draws its weights (None: torch's global RNG).
    """
    k = _check_layer(model, layer_idx)
    _check_optimizer(model, optimizer)
    conv = model.convs[k]
    width, cin = int(conv.weight.shape[0]), int(conv.weight.shape[1])
    if width + 1 > MAX_WIDTH:
        raise SurgeryError(f"{_layer_name(k)} already has {width} filters, the most a layer may have")
    index = width if index is None else _check_int("index", index, 0, width)

    bound = 1.0 / math.sqrt(cin * KERNEL * KERNEL)
    fresh = torch.empty(1, cin, KERNEL, KERNEL).uniform_(-bound, bound, generator=generator)
    fresh = fresh.to(device=conv.weight.device, dtype=conv.weight.dtype)

    def zeros_at(dim: int) -> Map:
        return lambda t: _insert_zeros(t, dim, index)

    _edit(optimizer, conv, "weight", lambda w: _insert(w, 0, index, fresh), zeros_at(0))
    _edit(optimizer, conv, "bias", zeros_at(0), zeros_at(0))
    conv.out_channels = width + 1

    if k + 1 < len(model.convs):
        nxt = model.convs[k + 1]
        _edit(optimizer, nxt, "weight", zeros_at(1), zeros_at(1))
        nxt.in_channels = width + 1
    else:
        side = model.spec.final_size
        grow = _on_head(width, side, zeros_at(1))
        _edit(optimizer, model.head, "weight", grow, grow)
        model.head.in_features = int(model.head.weight.shape[1])
    _sync(model, optimizer)
    return index


def remove_filter(
    model: RevaCNN, optimizer: torch.optim.Optimizer | None, layer_idx: int, filter_idx: int
) -> None:
    """Remove filter `filter_idx` of conv layer `layer_idx` and every weight that reads its output."""
    k = _check_layer(model, layer_idx)
    conv = model.convs[k]
    width = int(conv.weight.shape[0])
    i = _check_int(f"filter_idx ({_layer_name(k)} has filters 0..{width - 1})", filter_idx, 0, width - 1)
    if width == 1:
        raise SurgeryError(
            f"{_layer_name(k)} has a single filter left and a layer needs at least one; "
            f"remove the whole layer instead"
        )
    _check_optimizer(model, optimizer)

    def cut(dim: int) -> Map:
        return lambda t: _delete(t, dim, i)

    _edit(optimizer, conv, "weight", cut(0), cut(0))
    _edit(optimizer, conv, "bias", cut(0), cut(0))
    conv.out_channels = width - 1
    if k + 1 < len(model.convs):
        nxt = model.convs[k + 1]
        _edit(optimizer, nxt, "weight", cut(1), cut(1))
        nxt.in_channels = width - 1
    else:
        shrink = _on_head(width, model.spec.final_size, cut(1))
        _edit(optimizer, model.head, "weight", shrink, shrink)
        model.head.in_features = int(model.head.weight.shape[1])
    _sync(model, optimizer)


def add_conv_layer(
    model: RevaCNN,
    optimizer: torch.optim.Optimizer | None,
    position: int,
    width: int,
    *,
    generator: torch.Generator | None = None,
    calibration: torch.Tensor | None = None,
    ridge: float = 1e-2,
) -> int:
    """Insert a conv+ReLU+pool stage with `width` filters before conv layer `position` (len = at the end).

    Initialised as the identity on min(width, channels in) channels (see the module docstring); with
    `calibration` images (B, C, H, W) the head is then re-fitted to keep their logits (`ridge`: refit_head's
    pull towards the block-rule weights).  Returns `position`.
    """
    n = len(model.convs)
    p = _check_int(f"position (0..{n})", position, 0, n)
    width = _check_int("width", width, 1, MAX_WIDTH)
    old = model.spec
    try:
        new = Arch(old.in_channels, old.size, old.widths[:p] + (width,) + old.widths[p:], old.classes)
    except ValueError:
        raise SurgeryError(
            f"one more conv layer would pool the {old.size}x{old.size} input below 1x1 "
            f"(each layer halves the maps; at most {n} fit)"
        ) from None
    _check_optimizer(model, optimizer)
    targets = _logits(model, calibration)

    cin = old.in_channels if p == 0 else old.widths[p - 1]
    keep = min(width, cin)
    device, dtype = model.head.weight.device, model.head.weight.dtype
    conv = new_conv(cin, width, generator).to(device=device, dtype=dtype)
    with torch.no_grad():
        conv.weight[:keep].zero_()
        idx = torch.arange(keep, device=device)
        conv.weight[idx, idx, PADDING, PADDING] = 1.0  # the centre tap: identity (PADDING = KERNEL // 2)
        conv.bias.zero_()

    if p < n:  # the next conv now reads `width` channels instead of `cin`
        nxt = model.convs[p]
        _edit(optimizer, nxt, "weight", lambda w: _resize(w, 1, width), lambda v: _resize(v, 1, width))
        nxt.in_channels = width
    last, head_cin = old.widths[-1], (width if p == n else old.widths[-1])
    side = old.final_size

    def head_map(scale: float) -> Map:
        return _on_head(last, side, lambda t: _shrink_blocks(scale)(_resize(t, 1, head_cin)))

    _edit(optimizer, model.head, "weight", head_map(float(POOL * POOL)), head_map(1.0))
    model.head.in_features = int(model.head.weight.shape[1])
    model.convs.insert(p, conv)
    assert model.spec == new, (model.spec, new)
    _sync(model, optimizer)
    if targets is not None:
        refit_head(model, calibration, targets, ridge)
        _forget_head_state(optimizer)
    return p


def remove_conv_layer(
    model: RevaCNN,
    optimizer: torch.optim.Optimizer | None,
    layer_idx: int,
    *,
    calibration: torch.Tensor | None = None,
    ridge: float = 1e-2,
) -> None:
    """Remove conv layer `layer_idx` (with its pool); the next layer reads what the removed one read.

    With `calibration` images the head is re-fitted to keep their logits (see the module docstring; `ridge`
    as in add_conv_layer)."""
    k = _check_layer(model, layer_idx)
    n = len(model.convs)
    if n == 1:
        raise SurgeryError("conv1 is the only conv layer left and the network needs at least one")
    _check_optimizer(model, optimizer)
    targets = _logits(model, calibration)
    old = model.spec
    new = Arch(old.in_channels, old.size, old.widths[:k] + old.widths[k + 1 :], old.classes)
    cin = old.in_channels if k == 0 else old.widths[k - 1]

    if k + 1 < n:
        nxt = model.convs[k + 1]
        _edit(optimizer, nxt, "weight", lambda w: _resize(w, 1, cin), lambda v: _resize(v, 1, cin))
        nxt.in_channels = cin
    last, head_cin = old.widths[-1], new.widths[-1]

    def head_map(scale: float) -> Map:
        grow = _grow_blocks(new.final_size, scale)
        return _on_head(last, old.final_size, lambda t: grow(_resize(t, 1, head_cin)))

    _edit(optimizer, model.head, "weight", head_map(1.0 / (POOL * POOL)), head_map(1.0))
    model.head.in_features = int(model.head.weight.shape[1])
    del model.convs[k]
    assert model.spec == new, (model.spec, new)
    _sync(model, optimizer)
    if targets is not None:
        refit_head(model, calibration, targets, ridge)
        _forget_head_state(optimizer)


# -- head re-fit ------------------------------------------------------------------------------------------
def _logits(model: RevaCNN, images: torch.Tensor | None) -> torch.Tensor | None:
    if images is None:
        return None
    if images.ndim != 4 or tuple(images.shape[1:]) != (model.in_channels, model.size, model.size):
        raise SurgeryError(
            f"calibration images must be (B, {model.in_channels}, {model.size}, {model.size}), "
            f"got {tuple(images.shape)}"
        )
    with torch.no_grad():
        return model(images)


def _forget_head_state(optimizer: torch.optim.Optimizer | None) -> None:
    """Zero the optimizer's running state (momentum, moments) of every parameter after a re-fit.  The
    state was built for the weights before the edit; the re-fitted head moved far from them, and stale
    momentum pushing the new weights along old directions is what made the first steps after "+ layer"
    blow up at the default SGD settings (loss 0.3 -> 5000 on the digits).  Counters (`step`) stay."""
    if optimizer is None:
        return
    for state in optimizer.state.values():
        for key, value in state.items():
            if key != "step" and isinstance(value, torch.Tensor):
                value.zero_()


def refit_head(model: RevaCNN, images: torch.Tensor, targets: torch.Tensor, ridge: float = 1e-2) -> None:
    """Set head weight and bias (in place) to  argmin ||head(f) - targets||^2 + lam ||theta - theta_0||^2,
    f = model.head_input(images), theta_0 = the current head, lam = ridge * mean diagonal of f^T f.

    The pull towards theta_0 keeps the solution defined when there are fewer images than features, and near
    the block-rule weights where the images say little.  Solved in float64; ridge 0 is plain least squares.
    """
    with torch.no_grad():
        feats = model.head_input(images).to(torch.float64)
        x = torch.cat([feats, feats.new_ones(len(feats), 1)], dim=1)
        theta0 = torch.cat([model.head.weight.T, model.head.bias[None]], dim=0).to(torch.float64)
        gram = x.T @ x
        lam = ridge * float(gram.diagonal().mean()) + 1e-12  # > 0 even for all-zero (dead) features
        eye = torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
        theta = theta0 + torch.linalg.solve(gram + lam * eye, x.T @ (targets.to(torch.float64) - x @ theta0))
        model.head.weight.copy_(theta[:-1].T)
        model.head.bias.copy_(theta[-1])


def distill(
    model: RevaCNN,
    images: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    lr: float,
    batch: int,
    generator: torch.Generator | None = None,
    first: int = 0,
) -> float:
    """Train conv layers `first`.. and the head of `model` for `steps` Adam steps (an optimizer of its own,
    thrown away after) so that its predictions on `images` match `targets` (logits of the network before an
    edit): the KL divergence of softmax(model(images)) from softmax(targets), on batches of `batch` images
    drawn with `generator`.  The layers before `first` are left alone: their maps did not change.

    The head re-fit alone cannot undo what an inserted layer's pooling does to the layers after it: on
    MNIST the held-out loss still went 0.3 -> 1.2 after "+ layer".  A few dozen steps towards the old
    predictions take back about half of the rise (docs/BENCHMARKS.md, "Layer edits").  Adam's steps are about
    `lr` per weight whatever the gradient, so `lr` must stay small next to the weights (3e-3 took a trained
    net on the digits to chance).  Returns the last batch's divergence."""
    params = [p for conv in model.convs[first:] for p in conv.parameters()] + list(model.head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    soft = F.log_softmax(targets.detach(), dim=1)
    was = model.training
    model.train()
    kl = math.nan
    for _ in range(steps):
        idx = torch.randint(0, len(images), (min(batch, len(images)),), generator=generator)
        out = F.log_softmax(model(images[idx.to(images.device)]), dim=1)
        loss = F.kl_div(out, soft[idx.to(soft.device)], log_target=True, reduction="batchmean")
        for p in model.parameters():
            p.grad = None
        loss.backward()
        opt.step()
        kl = float(loss.detach())
    for p in model.parameters():
        p.grad = None
    model.train(was)
    return kl
