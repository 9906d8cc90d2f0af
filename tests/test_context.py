"""OpenGL version checks: an old driver gets a clear message instead of a shader error later."""

import pytest
from convscope.engine.gpu.context import GLVersionError, check_version, create_headless


class FakeContext:
    version_code = 210
    info = {"GL_RENDERER": "Ancient Rasterizer", "GL_VERSION": "2.1 Mesa 7.0"}


def test_old_opengl_is_refused_with_the_renderer_named():
    with pytest.raises(GLVersionError) as err:
        check_version(FakeContext())
    msg = str(err.value)
    assert "OpenGL 2.1" in msg and "Ancient Rasterizer" in msg and "3.3" in msg


@pytest.mark.gl
def test_llvmpipe_context_is_new_enough():
    ctx = create_headless()
    try:
        check_version(ctx)
        assert ctx.version_code >= 330
    finally:
        ctx.release()


@pytest.mark.gl
def test_render_process_never_imports_torch():
    """The whole explorer, run headless until the network has answered, in a fresh process."""
    import subprocess
    import sys

    code = """
import sys
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.gpu.context import create_headless
from convscope.scenes.explore.run import wait_until_ready
from convscope.scenes.explore.scene import ExploreScene
import convscope.scenes.cli
if __name__ == "__main__":
    ctx = create_headless()
    app = App(ExploreScene(AppConfig()), ctx=ctx, size=(320, 240))
    wait_until_ready(app, app.scene, 60)
    app.frame()
    app.close()
    prefixes = ("torch.", "convscope.models.nets", "convscope.models.weights")
    bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(prefixes))
    print("IMPORTED", bad)
    sys.exit(1 if bad else 0)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_no_scene_module_imports_torch():
    """Every render-side module of every scene imports without torch (the worker brings its own)."""
    import subprocess
    import sys

    code = (
        "import sys, convscope.engine.app, convscope.engine.window, convscope.scenes.cli, "
        "convscope.scenes.explore.scene, convscope.scenes.kiosk.scene, convscope.scenes.train.scene, "
        "convscope.features.embedding.panel, convscope.features.embedding.handle, "
        "convscope.features.embedding.messages, convscope.features.training.handle, "
        "convscope.features.training.messages, convscope.features.inference.handle, "
        "convscope.features.inference.messages, convscope.engine.proc.handle, "
        "convscope.engine.proc.heartbeat\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "sys.exit(f'imported {bad}' if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
