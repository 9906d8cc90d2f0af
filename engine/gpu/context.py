"""OpenGL context creation: a standalone EGL context for headless runs, and the version check.

The render loop needs OpenGL 3.3 core; anything older gets a clear error instead of a shader
compile failure deep inside a draw call.
"""

from __future__ import annotations

import moderngl

REQUIRED_GL = 330


class GLVersionError(RuntimeError):
    """The OpenGL driver is missing or older than the version convscope needs."""


def check_version(ctx: moderngl.Context) -> None:
    if ctx.version_code < REQUIRED_GL:
        info = ctx.info
        raise GLVersionError(
            f"OpenGL {ctx.version_code // 100}.{ctx.version_code % 100 // 10} found "
            f"({info.get('GL_RENDERER', '?')}, {info.get('GL_VERSION', '?')}); "
            "convscope needs OpenGL 3.3 or newer. "
            "Update the graphics driver, or use Mesa's llvmpipe (apt install libgl1-mesa-dri libegl-mesa0)."
        )


def create_headless() -> moderngl.Context:
    """A context with no window, through EGL (Mesa llvmpipe where there is no GPU)."""
    try:
        ctx = moderngl.create_context(standalone=True, backend="egl", require=REQUIRED_GL)
    except Exception as exc:  # moderngl raises plain Exception when EGL or the version is missing
        raise GLVersionError(
            f"cannot create a headless OpenGL {REQUIRED_GL // 100}.{REQUIRED_GL % 100 // 10} context "
            f"through EGL ({exc}); "
            "install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri"
        ) from None
    check_version(ctx)
    return ctx


def create_from_window() -> moderngl.Context:
    """Wrap the OpenGL context current on this thread (made by the window)."""
    ctx = moderngl.create_context(require=REQUIRED_GL)
    check_version(ctx)
    return ctx


def renderer_string(ctx: moderngl.Context) -> str:
    info = ctx.info
    return f"{info.get('GL_RENDERER', '?')} / {info.get('GL_VERSION', '?')}"
