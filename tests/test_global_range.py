"""The explorer's "whole network" colour range: the output's probabilities are drawn over the other
layers' range, so the winning class lights up as it does per layer (it stayed dark: p = 1 at the bottom
of a range set by activations in the tens).  Pixels of a headless frame at the output nodes.
Screenshot: out/screens/global_range_whole_network.png.
"""

from __future__ import annotations

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from ui_driver import frame, frames_until, save

pytestmark = pytest.mark.gl


def test_the_winner_is_lit_with_one_colour_range_for_the_whole_network(ctx, tmp_path):
    from convscope.scenes.explore.scene import ExploreScene

    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(1280, 720))
    try:
        frames_until(app, lambda: scene.ready, "the network")
        stroke = np.zeros((280, 280), np.float32)
        stroke[60:220, 120:160] = 1.0  # a "1"
        scene.pad.set_image(stroke)
        frames_until(app, lambda: scene.ready and scene.state.probabilities is not None, "the answer")
        scene.state.normalize = "global"
        for _ in range(4):
            frame(app)
        img = app.read_pixels()
        save(img, tmp_path, "global_range", "whole_network")
        out = scene.spec.layers[-1]
        probs = scene.state.probabilities
        win, lose = int(np.argmax(probs)), int(np.argmin(probs))
        assert probs[win] > 0.9, probs
        pts = scene.camera.project(scene.layout.positions[[out.start + win, out.start + lose]], 1280, 720)
        brightness = [float(img[int(y) - 1 : int(y) + 2, int(x) - 1 : int(x) + 2].mean()) for x, y in pts]
        assert brightness[0] > 150 and brightness[0] > brightness[1] + 80, (
            f"winner {win} (p {probs[win]:.2f}) brightness {brightness[0]:.0f}, "
            f"loser {lose} brightness {brightness[1]:.0f}"
        )
    finally:
        app.close()
