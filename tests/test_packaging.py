"""The installed package: one name (`convscope`), every subpackage listed, data files shipped.

The repository root is the package (pyproject's package-dir), so a folder with an `__init__.py` that
pyproject's `packages` list forgets would import fine from the checkout and be missing once installed.
The second test builds a real wheel from a copy of the tree, installs it into a folder of its own and
runs the installed copy: `import engine` / `import models` must fail there (they would shadow a user's
own `models/`), and the shaders and weights must be found inside the package.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("engine", "scenes", "models", "shaders", "features")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_every_package_folder_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {"convscope"}
    for top in SOURCES:
        for init in (ROOT / top).rglob("__init__.py") if (ROOT / top).is_dir() else ():
            if "__pycache__" in init.parts:
                continue
            found.add(".".join(("convscope", *init.parent.relative_to(ROOT).parts)))
    missing, absent = sorted(found - listed), sorted(listed - found)
    assert found == listed, f"missing from pyproject: {missing}; listed but absent: {absent}"


@pytest.mark.slow
def test_wheel_installs_under_one_name(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "__init__.py"):
        shutil.copy(ROOT / name, src / name)
    for top in SOURCES:
        if (ROOT / top).is_dir():
            shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src)]
    done = subprocess.run([*build, "-w", str(wheels)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = wheels.glob("convscope-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"convscope"}, tops
    assert "convscope/shaders/nodes.glsl" in names and "convscope/shaders/lib/colormap.glsl" in names
    assert "convscope/models/lenet.safetensors" in names and "convscope/scenes/kiosk/strokes.json" in names
    assert not any(n.startswith(("convscope/tests/", "convscope/tools/")) for n in names)

    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import importlib.util, sys\n"
        "import convscope.scenes.cli, convscope.engine.gpu.programs as p\n"
        f"assert convscope.__file__.startswith({str(site)!r}), convscope.__file__\n"
        "assert p.SHADER_DIR.joinpath('nodes.glsl').is_file()\n"
        "for bare in ('engine', 'scenes', 'models', 'shaders'):\n"
        "    assert importlib.util.find_spec(bare) is None, bare\n"
        "print('ok')\n"
    )
    # -I: no current directory, no user site; the installed copy alone is on the path ahead of site-packages.
    env_path = [str(site)]
    run = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path[:0] = {env_path!r}\n" + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stdout + run.stderr
