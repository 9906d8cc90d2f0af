"""Shared pytest set-up.

Mesa's llvmpipe and triton each bring their own LLVM; once a process holds a llvmpipe context,
importing triton (which torchvision pulls in through torch._dynamo) crashes it.  The app never
meets this (its render process has no torch), but this test process does both, so triton is
loaded first when it is installed.
"""

import contextlib
import os

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")  # imgui-bundle's PyOpenGL import must not ask for GLX

with contextlib.suppress(ImportError):
    import triton  # noqa: F401

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory, monkeypatch):
    """No test reads or writes the user's own settings (engine/ui/settings.py): the config folder is a
    fresh temporary one; a test that needs its own sets XDG_CONFIG_HOME again."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


@pytest.fixture(scope="module")
def ctx():
    """A headless GL context of the module's own, released after its last test (a module that draws on
    the process-wide one instead overrides this with `gl_helpers.gl_context()`)."""
    from convscope.engine.gpu.context import create_headless

    ctx = create_headless()
    yield ctx
    ctx.release()
