"""Shader programs: load shaders/<name>.glsl, resolve #include, compile its stages.

One .glsl file per program; its stages sit in `#if defined VERTEX_SHADER` / `FRAGMENT_SHADER`
(/ `GEOMETRY_SHADER`) sections, and its first line is `#version 330 core`.  For each stage the
loader inserts `#define <STAGE>` (and any caller defines) after that line.  `#include "lib/x.glsl"`
is resolved relative to the shaders package, once per file (include guards are implicit).
Virtual includes under "gen/" are produced by Python (the colormap table: engine.gpu.colormaps).

Compile errors are re-raised as ShaderError naming the original file and line, e.g.
`shaders/nodes.glsl:42 (vertex): error: ...`, not the line in the concatenated source.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import moderngl
from convscope import shaders
from convscope.engine.gpu import colormaps

SHADER_DIR = Path(shaders.__file__).parent
STAGES = ("VERTEX_SHADER", "GEOMETRY_SHADER", "FRAGMENT_SHADER")
_STAGE_KW = {
    "VERTEX_SHADER": "vertex_shader",
    "GEOMETRY_SHADER": "geometry_shader",
    "FRAGMENT_SHADER": "fragment_shader",
}

# Sources written by Python at load time; keeps tables that both the CPU and the GPU need in one place.
GENERATED: dict[str, Callable[[], str]] = {"gen/colormaps.glsl": colormaps.glsl_block}

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')
# Line references in driver logs: Mesa "0:12(5):", AMD/Intel "ERROR: 0:12:", NVIDIA "0(12) :".
_LOG_LINE = re.compile(r"^(?:\d+:(\d+)\(\d+\)|(?:ERROR|WARNING):\s*\d+:(\d+)|\d+\((\d+)\)\s*)\s*:")


class ShaderError(RuntimeError):
    """A shader failed to load, compile or link; the message names the .glsl file and line."""


Origin = tuple[str, int]  # (file relative to the shaders folder, 1-based line), ("<generated>", 0)


@functools.cache
def _read(name: str) -> str:
    if name in GENERATED:
        return GENERATED[name]()
    path = SHADER_DIR / name
    if not path.is_file():
        raise ShaderError(f"shader file not found: {path}")
    return path.read_text()


def _expand(name: str, seen: set[str], out: list[tuple[str, Origin]]) -> None:
    if name in seen:
        return
    seen.add(name)
    for i, line in enumerate(_read(name).splitlines(), start=1):
        m = _INCLUDE.match(line)
        if m:
            _expand(m.group(1), seen, out)
        else:
            out.append((line, (name, i)))


def stage_source(
    name: str, stage: str, defines: Mapping[str, object] | None = None
) -> tuple[str, list[Origin]]:
    """The full text of one stage of shaders/<name>.glsl and where each of its lines came from."""
    lines: list[tuple[str, Origin]] = []
    _expand(f"{name}.glsl", set(), lines)
    if not lines or not lines[0][0].startswith("#version"):
        raise ShaderError(f"shaders/{name}.glsl: the first line must be '#version 330 core'")
    head = [(f"#define {stage}", ("<generated>", 0))]
    head += [(f"#define {k} {v}", ("<generated>", 0)) for k, v in (defines or {}).items()]
    lines = lines[:1] + head + lines[1:]
    return "\n".join(text for text, _ in lines) + "\n", [origin for _, origin in lines]


def stages_of(name: str) -> list[str]:
    lines: list[tuple[str, Origin]] = []
    _expand(f"{name}.glsl", set(), lines)
    text = "\n".join(t for t, _ in lines)
    return [s for s in STAGES if re.search(rf"\b{s}\b", text)]


def _explain(name: str, log: str, origins: dict[str, list[Origin]]) -> str:
    """Rewrite line numbers in a driver log to file:line of the .glsl sources."""
    stage = None
    out = [f"cannot build shader program {name!r}:"]
    for raw in log.splitlines():
        key = raw.strip().upper()
        if key in STAGES:
            stage = key
            continue
        if not raw.strip() or set(raw.strip()) == {"="} or raw.startswith("GLSL "):
            continue
        m = _LOG_LINE.match(raw.strip())
        if m and stage in origins:
            n = int(next(g for g in m.groups() if g))
            src = origins[stage]
            file, line = src[n - 1] if 0 < n <= len(src) else ("?", n)
            message = raw.strip()[m.end() :].lstrip(" :")
            out.append(f"  shaders/{file}:{line} ({stage.split('_')[0].lower()}): {message}")
        else:
            out.append(f"  {raw.strip()}")
    return "\n".join(out)


def create_program(
    ctx: moderngl.Context, name: str, defines: Mapping[str, object] | None = None
) -> moderngl.Program:
    """Compile and link shaders/<name>.glsl.  The caller owns (and releases) the program."""
    stages = stages_of(name)
    if "VERTEX_SHADER" not in stages:
        raise ShaderError(f"shaders/{name}.glsl has no '#if defined VERTEX_SHADER' section")
    sources, origins = {}, {}
    for stage in stages:
        sources[_STAGE_KW[stage]], origins[stage] = stage_source(name, stage, defines)
    try:
        return ctx.program(**sources)
    except moderngl.Error as exc:
        raise ShaderError(_explain(name, str(exc), origins)) from None


def clear_cache() -> None:
    """Forget loaded sources (after editing .glsl files in a running process)."""
    _read.cache_clear()


def set_uniform(program: moderngl.Program, name: str, value: object) -> None:
    """Set a uniform if the compiler kept it (unused uniforms are optimised away).

    Arrays and matrices take bytes; scalars and vectors take Python values."""
    member = program.get(name, None)
    if member is None:
        return
    if isinstance(value, bytes | bytearray | memoryview):
        member.write(value)
    else:
        member.value = value
