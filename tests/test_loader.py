"""Loading a user's model and weights (models.loader): what loads, and one clear line for each way
it can go wrong (not Python, raises on import, no such NAME, not a Module, weights for another
model, NaN in the weights, pickled code instead of tensors)."""

from pathlib import Path

import pytest
import torch
from convscope.models.loader import LoadError, load_model, parse_shape, read_state_dict
from safetensors.torch import save_file
from torch import nn

NETS = Path(__file__).resolve().parent / "nets"


def _error(fn, *args, **kw) -> str:
    with pytest.raises(LoadError) as err:
        fn(*args, **kw)
    msg = str(err.value)
    assert "\n" not in msg, msg
    return msg


def test_loads_classes_functions_and_installed_modules():
    assert isinstance(load_model(f"{NETS / 'mnist_net.py'}:Net"), nn.Module)
    assert isinstance(load_model(f"{NETS / 'mnist_net.py'}:build"), nn.Module)
    m = load_model("convscope.models.nets:LeNet")
    assert type(m).__name__ == "LeNet" and not m.training


def test_weights_from_safetensors_and_pt(tmp_path):
    torch.manual_seed(0)
    src = load_model(f"{NETS / 'lenet5.py'}:LeNet5")
    state = {k: v.contiguous() for k, v in src.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    torch.save(src.state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, tmp_path / "ckpt.pth")
    for name in ("w.safetensors", "w.pt", "ckpt.pth"):
        m = load_model(f"{NETS / 'lenet5.py'}:LeNet5", weights=tmp_path / name)
        for k, v in m.state_dict().items():
            assert torch.equal(v, state[k]), (name, k)


def test_not_python_and_raising_on_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n\ndef f(:\n    pass\n")
    assert _error(load_model, f"{bad}:f") == f"{bad} is not Python: line 3: invalid syntax"
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe")
    assert "is not Python" in _error(load_model, f"{binary}:Net")
    boom = tmp_path / "boom.py"
    boom.write_text("import torch\nX = 1\nraise RuntimeError('no GPU here')\n")
    msg = _error(load_model, f"{boom}:X")
    assert "raises on import: RuntimeError: no GPU here" in msg and f"{boom}:3: raise RuntimeError" in msg, (
        msg
    )
    ctor = tmp_path / "ctor.py"
    ctor.write_text("from torch import nn\n\nclass M(nn.Module):\n    def __init__(self):\n        1 / 0\n")
    msg = _error(load_model, f"{ctor}:M")
    assert "M() raises: ZeroDivisionError" in msg and f"{ctor}:5: 1 / 0" in msg, msg
    assert _error(load_model, f"{tmp_path / 'none.py'}:M") == f"no such file: {tmp_path / 'none.py'}"


def test_no_such_name_and_not_a_module():
    odd = NETS / "odd.py"
    msg = _error(load_model, f"{odd}:Nope")
    assert f"{odd} has no 'Nope' (it defines: " in msg and "WithRoll" in msg and "Branchy" in msg
    assert "is not a torch.nn.Module (it is the class NotAModule)" in _error(load_model, f"{odd}:NotAModule")
    assert "not_a_module() returned int, not a torch.nn.Module" in _error(load_model, f"{odd}:not_a_module")
    assert "is not a torch.nn.Module (it is int)" in _error(load_model, f"{odd}:LENGTH")
    assert "no module named 'nosuchpkg'" in _error(load_model, "nosuchpkg.mod:X")
    assert "expected FILE.py:NAME" in _error(load_model, "justaname")


def test_weights_for_another_model_name_the_first_bad_key(tmp_path):
    torch.manual_seed(0)
    lenet = load_model(f"{NETS / 'lenet5.py'}:LeNet5")
    torch.save(lenet.state_dict(), tmp_path / "lenet.pt")
    msg = _error(load_model, f"{NETS / 'mnist_net.py'}:Net", weights=tmp_path / "lenet.pt")
    assert "'conv1.weight' has shape 6x1x5x5 in the file, 32x1x3x3 in the model" in msg, msg
    state = load_model(f"{NETS / 'mnist_net.py'}:Net").state_dict()
    missing = {k: v for k, v in state.items() if k != "fc2.bias"}
    torch.save(missing, tmp_path / "missing.pt")
    msg = _error(load_model, f"{NETS / 'mnist_net.py'}:Net", weights=tmp_path / "missing.pt")
    assert "they lack 'fc2.bias' (shape 10)" in msg
    torch.save({**state, "extra.weight": torch.zeros(2)}, tmp_path / "extra.pt")
    msg = _error(load_model, f"{NETS / 'mnist_net.py'}:Net", weights=tmp_path / "extra.pt")
    assert "the file has 'extra.weight', the model does not" in msg


def test_nan_and_pickled_code_are_refused(tmp_path):
    state = load_model(f"{NETS / 'mnist_net.py'}:Net").state_dict()
    state["fc1.weight"][3, 4] = float("nan")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "nan.safetensors")
    msg = _error(load_model, f"{NETS / 'mnist_net.py'}:Net", weights=tmp_path / "nan.safetensors")
    assert msg == f"weights {tmp_path / 'nan.safetensors'}: NaN in 'fc1.weight'"
    torch.save(load_model(f"{NETS / 'mnist_net.py'}:Net"), tmp_path / "whole.pt")  # a pickled module
    assert "hold more than tensors" in _error(read_state_dict, tmp_path / "whole.pt")
    (tmp_path / "w.bin").write_bytes(b"0")
    assert "expected .safetensors, .pt or .pth" in _error(read_state_dict, tmp_path / "w.bin")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    assert "cannot read weights" in _error(read_state_dict, tmp_path / "junk.safetensors")


def test_parse_shape():
    assert parse_shape("3,224,224") == (3, 224, 224) and parse_shape("1x28x28") == (1, 28, 28)
    assert "positive integers" in _error(parse_shape, "3,-1,5")
    assert "positive integers" in _error(parse_shape, "abc")
