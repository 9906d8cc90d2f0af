"""The model menu names a network given on the command line beside the shipped ones, and keeps it."""

from convscope.engine.config import AppConfig
from convscope.scenes.explore.scene import ExploreScene
from convscope.scenes.explore.state import MODELS, model_label


def test_labels_of_shipped_and_own_models():
    assert model_label("lenet") == "LeNet (CNN)"
    assert model_label("/home/me/nets/small_resnet.py:SmallResNet") == "small_resnet.py:SmallResNet"
    assert model_label("mypkg.models:build") == "mypkg.models:build"
    assert model_label("/data/exports/net.onnx") == "net.onnx"


def test_the_scene_lists_its_own_model_once():
    own = ExploreScene(AppConfig(model="tests/nets/small_resnet.py:SmallResNet"))
    assert own.state.own_models == ("tests/nets/small_resnet.py:SmallResNet",)
    assert own.state.model not in MODELS
    shipped = ExploreScene(AppConfig(model="mlp"))
    assert shipped.state.own_models == ()
