"""Your own network on the command line (scenes/cli.py -> scenes/explore/run.run_dump -> the worker): for
the six test nets of tests/nets, the real CLI loads the model from its file and weights, traces it in the
worker and dumps what the render process received; every dumped layer equals a direct torch forward
pass within 1e-5, node counts are right, and `--explain` numbers equal torch.  Model cards (beside the
file, in --config, overridden by flags) and the shipped LeNet's headless dump too.

Each case starts one worker process (torch import, trace); resnet18 at 3x224x224 is marked slow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from convscope.models.loader import load_model
from convscope.scenes.cli import main
from safetensors.torch import save_file

NETS = Path(__file__).resolve().parent / "nets"


def _resnet18_reference(m, x):
    from test_trace import _resnet18_reference as ref

    return ref(m, x)


# name, model, input shape, total nodes, save as, explain (layer, index), reference
LENET5_NODES = 1024 + 4704 + 1176 + 1600 + 400 + 120 + 84 + 10
MNIST_NODES = 784 + 21632 + 36864 + 9216 + 128 + 10
RESNET_NODES = 3072 + 4 * 16384 + 4 * 8192 + 4 * 4096 + 64 + 10
INCEPTION_NODES = 432 + 1152 + 576 + 576 + 864 + 432 + 288 + 1152 + 288 + 2448 + 68 + 10
CASES = {
    "lenet5": ("lenet5.py:LeNet5", (1, 32, 32), LENET5_NODES, ".safetensors", ("conv2d", "3,4,5")),
    "mnist_net": ("mnist_net.py:build", (1, 28, 28), MNIST_NODES, ".pt", ("fc1", "17")),
    "small_resnet": ("small_resnet.py:SmallResNet", (3, 32, 32), RESNET_NODES, ".safetensors",
                     ("block2.add", "2,3,4")),
    "separable": ("separable.py:Separable", (3, 16, 16), None, ".pth", None),
    "inception": ("inception.py:Inception", (3, 12, 12), INCEPTION_NODES, ".safetensors", None),
    "resnet18": ("tv_resnet.py:resnet18_10", (3, 224, 224), 3_588_106, ".safetensors",
                 ("layer2.0.conv2", "5,6,7")),
}  # fmt: skip


def save_weights(model: torch.nn.Module, path: Path) -> None:
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)  # torch.save(model.state_dict()), read back with weights_only=True


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


def reference(name: str, model, x: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        if name == "resnet18":
            return _resnet18_reference(model.eval(), x)
        return model.reference(x)


def explain_layer(dag_layers: list[str], case) -> tuple[str, str]:
    return case[4] if case[4] is not None else (dag_layers[len(dag_layers) // 2], "0")


@pytest.mark.parametrize(
    "name", [n if n != "resnet18" else pytest.param(n, marks=pytest.mark.slow) for n in CASES]
)
def test_cli_dump_equals_torch(name, tmp_path, capsys):
    if name == "resnet18":
        pytest.importorskip("torchvision")
    spec, shape, total, suffix, _ = CASES[name]
    torch.manual_seed(3)
    model = load_model(f"{NETS / spec}")
    if name == "small_resnet":  # running statistics away from 0 / 1, so the folded batch norm shows
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    weights = tmp_path / f"{name}{suffix}"
    save_weights(model, weights)
    x = torch.from_numpy(np.random.default_rng(7).standard_normal(shape).astype(np.float32))
    np.save(tmp_path / "x.npy", x.numpy())
    ref = reference(name, model, x[None])
    layer, index = explain_layer(list(ref), CASES[name])
    dump, explained = tmp_path / "acts.npz", tmp_path / "node.json"
    rc, err = run_cli(
        ["--model", f"{NETS / spec}", "--weights", str(weights), "--input-shape", ",".join(map(str, shape)),
         "--device", "cpu", "--headless", "--input", str(tmp_path / "x.npy"), "--dump-activations", str(dump),
         "--explain", f"{layer}:{index}", "--explain-json", str(explained)],
        capsys,
    )  # fmt: skip
    assert rc == 0, err
    got = dict(np.load(dump))
    np.testing.assert_array_equal(got["input"], x.numpy())  # the traced input layer is named "input" too
    probs = got.pop("probabilities")
    assert got.pop("nonfinite").size == 0
    assert sorted(got) == sorted(ref), "dumped layers differ from the reference's"
    for key, want in ref.items():
        np.testing.assert_allclose(got[key], want[0].numpy().reshape(got[key].shape), atol=1e-5, rtol=0,
                                   err_msg=f"{name}.{key}")  # fmt: skip
    n_nodes = sum(a.size for a in got.values())
    if total is not None:
        assert n_nodes == total
    with torch.no_grad():
        out = model.eval()(x[None])[0]
    want_probs = out.exp() if name == "mnist_net" else torch.softmax(out, 0)  # mnist_net ends in log_softmax
    np.testing.assert_allclose(probs, want_probs.numpy(), atol=1e-6)
    # --explain: the node's value is torch's, its inputs are the dumped source values, and the sum of
    # weight x input plus bias, through the folded chain, gives the value again.
    e = json.loads(explained.read_text())
    lay = got[layer]
    idx = tuple(int(i) for i in index.split(","))
    flat = int(np.ravel_multi_index(idx, lay.shape)) if len(idx) == 3 else idx[0]
    want_value = ref[layer][0].numpy().reshape(-1)[flat]
    assert e["layer"] == layer
    assert abs(e["value"] - want_value) <= 1e-5, (e["value"], want_value)
    assert abs(e["result"] - e["value"]) <= 1e-4 * max(1.0, abs(e["value"]))
    assert len(e["sources"]) == len(e["inputs"]) > 0
    if e["weights"] is not None:
        total_sum = float(np.dot(np.asarray(e["weights"], np.float64), np.asarray(e["inputs"], np.float64)))
        assert abs(total_sum - e["sum"]) <= 1e-4 * max(1.0, abs(total_sum))


def test_shipped_lenet_headless_dump(tmp_path, capsys):
    dump = tmp_path / "lenet.npz"
    rc, err = run_cli(["--headless", "--dump-activations", str(dump)], capsys)
    assert rc == 0, err
    got = dict(np.load(dump))
    assert sum(got[k].size for k in got if k not in ("probabilities", "nonfinite")) == 8894
    assert got["input"].shape == (1, 28, 28) and got["probabilities"].shape == (10,)
    assert abs(float(got["probabilities"].sum()) - 1.0) < 1e-5


def test_model_card_beside_the_file_and_overrides(tmp_path, capsys):
    """FILE.toml beside FILE.py sets shape, normalisation, classes and weights; flags override it."""
    shutil.copy(NETS / "mnist_net.py", tmp_path / "mnist_net.py")
    torch.manual_seed(5)
    model = load_model(f"{tmp_path / 'mnist_net.py'}:Net")
    torch.save(model.state_dict(), tmp_path / "w.pt")
    (tmp_path / "names.txt").write_text("\n".join(f"digit {i}" for i in range(10)) + "\n")
    (tmp_path / "mnist_net.toml").write_text(
        'input_shape = [1, 28, 28]\nnormalize = "0.5/0.25"\nclasses = "names.txt"\nweights = "w.pt"\n'
    )
    drawing = np.zeros((28, 28), np.float32)
    drawing[6:22, 12:16] = 1.0
    from PIL import Image

    Image.fromarray((drawing * 255).astype(np.uint8)).save(tmp_path / "stroke.png")
    dump = tmp_path / "a.npz"
    args = ["--model", f"{tmp_path / 'mnist_net.py'}:Net", "--headless", "--dump-activations", str(dump)]
    rc, err = run_cli([*args, "--input", str(tmp_path / "stroke.png")], capsys)
    assert rc == 0, err
    got = np.load(dump)
    x = got["input"]
    assert x.shape == (1, 28, 28)
    assert set(np.round(np.unique(x), 4)) <= {-2.0, 2.0} | set(np.round(np.unique(x), 4)), x
    assert np.isclose(x.min(), -2.0), "ink 0 normalised with mean 0.5, std 0.25"
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)[None])[0].exp().numpy()
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-6)
    # a flag overrides the card: three class names for ten outputs is one clear error
    rc, err = run_cli([*args, "--classes", "a,b,c"], capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("convscope: error:"), err
    assert "3 class names for 10 outputs" in err
    # a mistake in the card is a usage error naming the card and the field
    (tmp_path / "mnist_net.toml").write_text('input_shape = "1,28"\n')
    rc, err = run_cli(args, capsys)
    assert rc == 2 and "mnist_net.toml" in err and "input_shape" in err, err


def test_config_file_card(tmp_path, capsys):
    """--config FILE.toml holds the same card fields (and ordinary settings); a flag still wins."""
    torch.manual_seed(2)
    model = load_model(f"{NETS / 'separable.py'}:Separable")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "sep.safetensors"))
    cfg = tmp_path / "card.toml"
    cfg.write_text(
        f'model = "{NETS / "separable.py"}:Separable"\ninput_shape = "3,16,16"\nmean = [0.1, 0.2, 0.3]\n'
        'std = [1.0, 2.0, 4.0]\nweights = "sep.safetensors"\nworker_timeout = 120.0\n'
    )
    x = np.random.default_rng(0).standard_normal((3, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    dump = tmp_path / "a.npz"
    x_path, classes = str(tmp_path / "x.npy"), ",".join("abcdefghij")
    rc, err = run_cli(["--config", str(cfg), "--headless", "--input", x_path, "--classes", classes,
                       "--dump-activations", str(dump)], capsys)  # fmt: skip
    assert rc == 0, err
    got = np.load(dump)
    np.testing.assert_array_equal(got["input"], x)  # a tensor given as .npy is handed over as it is
    with torch.no_grad():
        want = torch.softmax(model.eval()(torch.from_numpy(x)[None])[0], 0).numpy()
    np.testing.assert_allclose(got["probabilities"], want, atol=1e-6)
    cfg.write_text('input_shape = "3,16,16"\nmean = [0.1, 0.2]\nstd = [1.0, 2.0]\n')
    rc, err = run_cli(["--config", str(cfg), "--model", f"{NETS / 'separable.py'}:Separable", "--headless",
                       "--dump-activations", str(dump)], capsys)  # fmt: skip
    assert rc == 2 and "2 mean values for an input of 3 channels" in err, err


BAD = {
    "not python": ("notpython.py", "\x00\x01 binary", "Net", [], "is not Python"),
    "raises on import": ("boom.py", "import torch\nraise RuntimeError('no GPU here')\n", "Net", [],
                         "raises on import: RuntimeError: no GPU here"),
    "no such name": ("nets_copy.py", None, "Nope", [], "has no 'Nope'"),
    "not a module": ("odd.py", None, "not_a_module", [], "not a torch.nn.Module"),
    "shape does not fit": ("mnist_net.py", None, "Net", ["--input-shape", "1,20,20"], "fit layer 'fc1'"),
    "control flow": ("odd.py", None, "Branchy", ["--input-shape", "4"], "data-dependent control flow"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_models_are_one_line_exit_2(case, tmp_path, capsys):
    fname, text, attr, extra, want = BAD[case]
    path = tmp_path / fname
    if text is None:
        shutil.copy(NETS / ("mnist_net.py" if fname == "nets_copy.py" else fname), path)
    else:
        path.write_text(text)
    args = ["--model", f"{path}:{attr}", "--headless", "--dump-activations", str(tmp_path / "a.npz")]
    if "--input-shape" not in extra:
        args += ["--input-shape", "1,28,28"]
    rc, err = run_cli([*args, *extra], capsys)
    assert rc == 2, err
    assert err.startswith("convscope: error:") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert want in err, err
    assert not (tmp_path / "a.npz").exists()


def test_bad_weights_are_one_line_exit_2(tmp_path, capsys):
    torch.manual_seed(0)
    other = load_model(f"{NETS / 'lenet5.py'}:LeNet5")
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(tmp_path / "other.safetensors"))
    model = load_model(f"{NETS / 'mnist_net.py'}:Net")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc1.bias"][3] = float("nan")
    torch.save(state, tmp_path / "nan.pt")
    base = ["--model", f"{NETS / 'mnist_net.py'}:Net", "--input-shape", "1,28,28", "--headless",
            "--dump-activations", str(tmp_path / "a.npz")]  # fmt: skip
    rc, err = run_cli([*base, "--weights", str(tmp_path / "other.safetensors")], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "conv1.weight" in err and "6x1x5x5" in err and "32x1x3x3" in err, err
    rc, err = run_cli([*base, "--weights", str(tmp_path / "nan.pt")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "NaN in 'fc1.bias'" in err, err


def test_bad_command_lines(tmp_path, capsys):
    for args, want in (
        (["--model", "resnet"], "neither a shipped network"),
        (["--model", f"{tmp_path / 'none.py'}:Net"], "no file"),
        (
            ["--input-shape", "3,x,4", "--headless", "--dump-activations", str(tmp_path / "a.npz")],
            "input-shape",
        ),
        (["--normalize", "0.5", "--headless", "--dump-activations", str(tmp_path / "a.npz")], "MEAN"),
        (["--normalize", "0.5/0", "--headless", "--dump-activations", str(tmp_path / "a.npz")], "above 0"),
        (["--explain", "conv1:3", "--headless"], "go together"),
        (["--explain", "conv1", "--explain-json", str(tmp_path / "e.json"), "--headless"], "LAYER:INDEX"),
        (["--device", "tpu"], "invalid choice"),
    ):
        rc, err = run_cli(args, capsys)
        assert rc == 2 and err.startswith("convscope: error:") and err.count("\n") == 1, (args, err)
        assert want in err, (args, err)


def test_explain_checks_the_layer_and_index(tmp_path, capsys):
    out = tmp_path / "e.json"
    for spec, want in (
        ("conv9:0", "no layer 'conv9'"),
        ("conv1:6,0,0", "is (6, 28, 28)"),
        ("fc1:120", "120 nodes"),
    ):
        rc, err = run_cli(["--headless", "--explain", spec, "--explain-json", str(out)], capsys)
        assert rc == 2 and want in err and err.count("\n") == 1, err
    rc, err = run_cli(["--headless", "--explain", "conv1:2,3,4", "--explain-json", str(out)], capsys)
    assert rc == 0, err
    e = json.loads(out.read_text())
    assert e["layer"] == "conv1" and len(e["weights"]) == 25 and e["activation"] == "relu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_device_cuda_without_cuda_is_one_line(tmp_path, capsys):
    rc, err = run_cli(
        ["--device", "cuda", "--headless", "--dump-activations", str(tmp_path / "a.npz")], capsys
    )
    assert rc == 2 and err.count("\n") == 1 and "no CUDA device" in err, err


def test_device_auto_falls_back_to_cpu():
    from convscope.features.inference.model import LoadFailed, pick_device

    want = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto").type == want
    assert pick_device("cpu").type == "cpu"
    with pytest.raises(LoadFailed, match="expected one of"):
        pick_device("tpu")
