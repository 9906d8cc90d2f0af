"""A private Xvfb screen for the tests that drive real windows, and xdotool pointed at it.

    @pytest.fixture(scope="module")
    def display():
        with xvfb_screen("1280x800", first=90) as name:   # ":90", or the next free number
            yield name

The screen is skipped (pytest.skip, with the reason) where Xvfb or xdotool is missing or the server
does not come up; it is stopped when the block ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def xvfb_screen(size: str, first: int, extra: Sequence[str] = (), count: int = 30) -> Iterator[str]:
    """An Xvfb server with one `size` screen (e.g. "1280x800") on the first free display from `first`."""
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb and xdotool are needed (apt-get install xvfb xdotool)")
    for n in range(first, first + count):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            break
    proc = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", f"{size}x24", "-nolisten", "tcp", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{n}").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.skip("Xvfb did not start")
        time.sleep(0.05)
    try:
        yield f":{n}"
    finally:
        proc.terminate()
        proc.wait(10)


def xdo(display: str, *args: str) -> str:
    """xdotool on `display`; its output, stripped."""
    env = {**os.environ, "DISPLAY": display}
    return subprocess.run(
        ["xdotool", *args], env=env, capture_output=True, text=True, timeout=20
    ).stdout.strip()
