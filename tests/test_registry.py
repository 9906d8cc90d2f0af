"""models/registry.py: the networks by name, without torch; the engine's config checks names against it.
Run: python -m pytest tests/test_registry.py -q
"""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_registry_imports_without_torch_and_names_what_nets_builds():
    code = (
        "import sys; from convscope.models import registry; "
        "assert registry.names() == ('lenet', 'mlp'), registry.names(); "
        "assert 'torch' not in sys.modules"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    from convscope.models import nets, registry

    assert set(registry.names()) == set(nets.MODELS)
    for name in registry.names():
        assert registry.builder(name) is nets.MODELS[name]
        assert type(nets.build(name)) is nets.MODELS[name]
    with pytest.raises(ValueError, match="unknown model 'vgg'"):
        registry.entry("vgg")


def test_config_checks_model_names_the_scenes_registered():
    import convscope.scenes  # noqa: F401  (registers the names)
    from convscope.engine.config import ConfigError, load_config

    assert load_config(model="mlp").model == "mlp"
    with pytest.raises(ConfigError, match="model: 'vgg' is not one of 'lenet', 'mlp'"):
        load_config(model="vgg")
