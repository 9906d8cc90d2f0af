"""Models loaded from files without their source (models/formats.py, models/onnx_torch.py).

Two small models are written here (conv + batch norm + relu + pool + linear; a residual block with a
stride-2 1x1 shortcut, a global average and log_softmax), exported with torch.export.save (.pt2) and
torch.onnx.export (.onnx, by the default torch.export-based exporter and by the TorchScript one),
loaded by `load_model(path)` alone, traced, and checked against the source: the same node layers
(kinds, shapes, node counts, names), every layer's values equal to a
torch forward pass of the source within 1e-5.  Damaged or foreign files are one LoadError line;
a .pt2 that would make torch run code from it (guard code, pickles, non-operator calls) is refused
before any of it runs.
"""

import contextlib
import io
import json
import logging
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from convscope.models.formats import program_input_shape
from convscope.models.loader import LoadError, load_model
from convscope.models.trace import activations, trace
from torch import nn


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    """Running statistics away from (0, 1), so that batch norm folding is really tested."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return model.eval()


class SmallNet(nn.Module):
    """conv + batch norm + relu + max pool + linear."""

    shape = (1, 12, 12)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(6 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(F.relu(self.bn(self.conv(x)))), 1))

    def reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each node layer's value, written out in torch (layer name -> value)."""
        conv = F.relu(self.bn(self.conv(x)))
        pool = self.pool(conv)
        return {"conv": conv, "pool": pool, "fc": self.fc(pool.flatten(1))}


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class Residual(nn.Module):
    """A stem, one residual block (stride-2 1x1 shortcut), a global average, linear, log_softmax."""

    shape = (3, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Block(8, 16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block(F.relu(self.stem(x)))
        return F.log_softmax(self.fc(torch.flatten(self.pool(x), 1)), dim=1)

    def reference(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.block
        stem = F.relu(self.stem(x))
        conv1 = F.relu(b.bn1(b.conv1(stem)))
        conv2 = b.bn2(b.conv2(conv1))
        short = b.shortcut(stem)
        add = F.relu(conv2 + short)
        pool = self.pool(add)
        return {
            "stem": stem,
            "block.conv1": conv1,
            "block.conv2": conv2,
            "block.shortcut.0": short,
            "block.add": add,
            "pool": pool,
            "fc": F.log_softmax(self.fc(pool.flatten(1)), dim=1),
        }


MODELS = {"small": SmallNet, "residual": Residual}


def _source(kind: str) -> nn.Module:
    torch.manual_seed(3)
    return _randomize_bn(MODELS[kind](), seed=4)


def _input(shape, seed: int = 5, batch: int = 1) -> torch.Tensor:
    return torch.rand((batch, *shape), generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warn about deprecations; keep the test log readable."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.root.manager.disable
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(level)


def _export(model: nn.Module, fmt: str, folder: Path) -> Path:
    x = _input(model.shape)
    with _quiet():
        if fmt == "pt2":
            path = folder / "model.pt2"
            torch.export.save(torch.export.export(model, (x,)), path)
        else:
            path = folder / f"model_{fmt}.onnx"
            torch.onnx.export(model, (x,), path, dynamo=fmt == "onnx")
    return path


FORMATS = ["pt2", "onnx", "onnx-torchscript"]


def _chain(layer, without_affine: bool) -> list[str]:
    steps = [s for s in layer.activation.split(" -> ") if s != "identity"]
    return [s for s in steps if not (without_affine and s == "affine")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model kind, format) -> (source model, file): each exported once for the module."""
    folder = tmp_path_factory.mktemp("exported")
    out = {}
    for kind in MODELS:
        source = _source(kind)
        for fmt in FORMATS:
            sub = folder / f"{kind}_{fmt}"
            sub.mkdir()
            out[kind, fmt] = source, _export(source, "legacy" if fmt == "onnx-torchscript" else fmt, sub)
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(MODELS))
def test_file_loads_traces_and_equals_the_source(exported, kind, fmt):
    source, path = exported[kind, fmt]
    model = load_model(str(path))  # no ":NAME": the suffix says what it is
    assert program_input_shape(model) == source.shape
    shape = source.shape
    want_t, got_t = trace(source, shape), trace(model, shape)
    want, got = want_t.dag, got_t.dag
    assert got.total_nodes == want.total_nodes
    assert [(x.kind, x.shape, x.count) for x in got.layers] == [
        (x.kind, x.shape, x.count) for x in want.layers
    ]
    folded = fmt != "pt2"  # ONNX exporters fold batch norm into the conv's weights: no affine step left
    assert [_chain(x, folded) for x in got.layers] == [_chain(x, folded) for x in want.layers]
    assert [x.name for x in got.layers] == [x.name for x in want.layers]
    assert got.output_kind == want.output_kind
    x = _input(shape, seed=9)
    acts = activations(got_t, x)
    with torch.no_grad():
        ref = source.reference(x)
    assert len(ref) == len(got.layers) - 1
    for layer, (name, value) in zip(got.layers[1:], ref.items(), strict=True):
        np.testing.assert_allclose(
            acts.layers[layer.name], value[0].numpy().reshape(layer.shape), atol=1e-5, rtol=0, err_msg=name
        )
    np.testing.assert_array_equal(acts.input, x[0].numpy())
    with torch.no_grad():
        np.testing.assert_allclose(acts.output, source(x)[0].numpy(), atol=1e-5, rtol=0)


NETS = Path(__file__).resolve().parent / "nets"


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "spec, shape",
    [
        ("lenet5.py:LeNet5", (1, 32, 32)),  # a masked functional conv, scaled tanh, transpose + flatten
        ("inception.py:Inception", (3, 12, 12)),  # concat of four branches
        ("separable.py:Separable", (3, 16, 16)),  # depthwise conv, x.mean((2, 3))
        ("odd.py:Pools", (1, 12, 12)),  # padding counted or not, ceil mode, dilation, asymmetric pad, crops
    ],
)
def test_test_nets_through_files(tmp_path, spec, shape, fmt):
    """The tracer's own test models, exported and read back: the Dag and every value as the source's."""
    torch.manual_seed(0)
    source = load_model(f"{NETS / spec}")
    source.shape = shape
    path = _export(source, "legacy" if fmt == "onnx-torchscript" else fmt, tmp_path)
    want_t, got_t = trace(source, shape), trace(load_model(str(path)), shape)
    assert [(x.kind, x.shape, x.count) for x in got_t.dag.layers] == [
        (x.kind, x.shape, x.count) for x in want_t.dag.layers
    ]
    assert [x.name for x in got_t.dag.layers] == [x.name for x in want_t.dag.layers]
    x = _input(shape, seed=7)
    np.testing.assert_allclose(activations(got_t, x).flat, activations(want_t, x).flat, atol=1e-5, rtol=0)
    if fmt == "pt2":  # the program has the source's parameter and buffer names: its state dict fits
        torch.save(source.state_dict(), tmp_path / "w.pt")
        assert load_model(str(path), weights=tmp_path / "w.pt") is not None


@pytest.mark.parametrize("fmt", ["onnx", "onnx-torchscript"])
def test_onnx_model_runs_on_a_batch(exported, fmt):
    """The file was exported at batch 1, yet the converted module keeps the batch dim free."""
    source, path = exported["residual", fmt]
    model = load_model(str(path))
    x = _input(source.shape, seed=2, batch=3)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), source(x).numpy(), atol=1e-5, rtol=0)


def test_pt2_with_a_free_batch_size(tmp_path):
    """A program exported with a symbolic batch dim holds size expressions (checked, then read)."""
    source = _source("residual")
    x = _input(Residual.shape, batch=2)
    with _quiet():
        dims = ({0: torch.export.Dim("batch", min=1, max=64)},)
        torch.export.save(torch.export.export(source, (x,), dynamic_shapes=dims), tmp_path / "dyn.pt2")
    model = load_model(str(tmp_path / "dyn.pt2"))
    assert program_input_shape(model) == Residual.shape
    assert trace(model, Residual.shape).dag.total_nodes == trace(source, Residual.shape).dag.total_nodes
    x = _input(Residual.shape, seed=6, batch=5)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), source(x).numpy(), atol=1e-5, rtol=0)


def test_pt2_takes_a_state_dict_of_its_source(exported, tmp_path):
    from safetensors.torch import save_file

    source, path = exported["small", "pt2"]
    other = _randomize_bn(SmallNet(), seed=8)
    with torch.no_grad():
        other.conv.weight.mul_(-2.0)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "w.safetensors")
    model = load_model(str(path), weights=tmp_path / "w.safetensors")
    x = _input(SmallNet.shape)
    with torch.no_grad():
        np.testing.assert_allclose(model(x).numpy(), other(x).numpy(), atol=1e-6, rtol=0)
        assert np.abs(model(x).numpy() - source(x).numpy()).max() > 1e-3


# -- bad files -------------------------------------------------------------------------------------------


def _one_line_error(path: Path) -> str:
    with pytest.raises(LoadError) as err:
        load_model(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_damaged_or_foreign_files_are_one_error(exported, tmp_path, suffix):
    fmt = "pt2" if suffix == ".pt2" else "onnx-torchscript"
    good = exported["small", fmt][1].read_bytes()
    other = exported["small", "onnx-torchscript" if suffix == ".pt2" else "pt2"][1].read_bytes()
    pickled = io.BytesIO()
    torch.save(SmallNet(), pickled)  # a whole pickled model: a zip, but no program
    cases = {
        "truncated": good[: len(good) // 2],
        "noise": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "empty": b"",
        "text": b"import torch\nprint('hello')\n",
        "other_format": other,
        "pickled_model": pickled.getvalue(),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        _one_line_error(path)
    assert "no such file" in _one_line_error(tmp_path / f"missing{suffix}")


def test_onnx_without_its_external_weights_is_one_error(tmp_path):
    model = _source("small")
    path = _export(model, "onnx", tmp_path)
    data = [p for p in tmp_path.iterdir() if p.name.startswith(path.name + ".")]
    assert load_model(str(path)) is not None
    for p in data:
        p.unlink()
    if data:  # the exporter kept the weights beside the graph: now they are gone
        _one_line_error(path)


# -- .pt2 archives that would run code -------------------------------------------------------------------


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a .pt2 zip, passing each member (name, bytes) through `edit` (None drops it); `edit`
    is also called once with (None, None) to add members: it returns a list of (name, bytes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            out = edit(name, zin.read(name))
            if out is not None:
                zout.writestr(name, out)
        for name, data in edit(None, None) or []:
            zout.writestr(name, data)
    return dst


def _edit_program(fn):
    def edit(name, data):
        if name is None:
            return []
        if name.endswith("models/model.json"):
            program = json.loads(data)
            fn(program)
            return json.dumps(program).encode()
        return data

    return edit


class _Touch:
    """Unpickling this creates a file: the proof that a pickle ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_pt2_that_would_run_code_is_refused(exported, tmp_path):
    src = exported["small", "pt2"][1]
    mark = tmp_path / "ran"

    def guard(program):  # ExportedProgram.module() exec's these (torch 2.14 runs them on each call)
        program["guards_code"] = [f"__import__('pathlib').Path({str(mark)!r}).touch() is None"]

    def size_expr(program):  # sympify evaluates a symbolic size as Python
        node = program["graph_module"]["graph"]["nodes"][0]
        node["outputs"][0] = {"as_sym_int": {"as_expr": {"expr_str": "__import__('os').getpid()"}}}

    def not_an_operator(program):  # torch's verifier catches this one too; either way, one error
        program["verifiers"] = []
        for node in program["graph_module"]["graph"]["nodes"]:
            if node["target"].startswith("torch.ops.aten.relu"):
                node["target"] = "torch.save"

    def quoted_name(program):
        node = program["graph_module"]["graph"]["nodes"][0]
        node["outputs"][0]["as_tensor"]["name"] = 'x"); import os; ("'

    def quoted_parameter(program):  # a parameter's path is written into the module's code
        def walk(obj):
            if isinstance(obj, dict):
                for k, v in obj.items():
                    if k == "parameter_name":
                        obj[k] = 'conv"); import os; ("'
                        return True
                    if walk(v):
                        return True
            elif isinstance(obj, list):
                return any(walk(v) for v in obj)
            return False

        assert walk(program)

    def pickled_weight(name, data):
        if name is None:
            return []
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            for v in config["config"].values():
                v["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    def pickled_inputs(name, data):
        if name is None:
            return []
        if "/data/sample_inputs/" in name:
            buf = io.BytesIO()
            torch.save(_Touch(mark), buf)
            return buf.getvalue()
        return data

    def compiled_library(name, data):
        if name is None:
            root = next(n for n in zipfile.ZipFile(src).namelist() if n.endswith("archive_format"))
            return [(root[: -len("archive_format")] + "data/aotinductor/model/model.so", b"\x7fELF")]
        return data

    edits = {
        "guard": _edit_program(guard),
        "size_expr": _edit_program(size_expr),
        "not_an_operator": _edit_program(not_an_operator),
        "quoted_name": _edit_program(quoted_name),
        "quoted_parameter": _edit_program(quoted_parameter),
        "pickled_weight": pickled_weight,
        "pickled_inputs": pickled_inputs,
        "compiled_library": compiled_library,
    }
    for name, edit in edits.items():
        path = _rewrite(src, tmp_path / f"{name}.pt2", edit)
        msg = _one_line_error(path)
        assert "refused" in msg or name == "not_an_operator", (name, msg)
        assert not mark.exists(), name
    # the untouched archive still loads: the checks refuse what they should, not everything
    assert load_model(str(_rewrite(src, tmp_path / "same.pt2", lambda n, d: [] if n is None else d)))


def test_unsupported_onnx_op_is_one_error_naming_it(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="act"),
            helper.make_node("Det", ["r"], ["y"], name="det"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "det.onnx"
    onnx.save(helper.make_model(graph), path)
    msg = _one_line_error(path)
    assert "Det" in msg and "'det'" in msg, msg


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_user_code_in_the_loaded_model(exported, fmt):
    """The loaded model is torch's own modules and a graph: no class of the user's file."""
    _, path = exported["residual", fmt]
    mods = {type(m).__module__ for m in load_model(str(path)).modules()}
    assert all(m.startswith("torch.") for m in mods), mods
