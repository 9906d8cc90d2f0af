"""Windows open beside what they refer to (headless, real scenes): Node details never covers the node it
explains (a node at the right end of fc2 sends it beside the left column), the explorer's Embedding window
docks at the right and the network is framed left of it, and the training scene's Embedding window
never covers the Training panel's rows (Hyperparameters open) nor the network, and its plot is at least
200 px high at 1280x720, 1600x900 and 1920x1080.
Screenshots: out/screens/beside_<name>.png.
"""

from __future__ import annotations

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from ui_driver import embed_shown, frame, frames_until, save

pytestmark = pytest.mark.gl


@pytest.fixture(scope="module")
def ctx():
    from convscope.engine.gpu.context import create_headless

    ctx = create_headless()
    yield ctx
    ctx.release()


def _contains(r, x: float, y: float) -> bool:
    return r.x <= x <= r.right and r.y <= y <= r.bottom


def _overlap(a, b) -> bool:
    return a.x < b.right and b.x < a.right and a.y < b.bottom and b.y < a.bottom


def test_node_details_and_the_embedding_window_keep_off_the_network(ctx, tmp_path):
    from convscope.scenes.explore.scene import ExploreScene

    scene = ExploreScene(AppConfig(pad_size=280))
    app = App(scene, ctx=ctx, size=(1920, 1080))
    try:
        frames_until(app, lambda: scene.ready, "the network")
        fc2 = scene.spec.layers[-2]
        for end in (np.argmax, np.argmin):  # the right end lies under the panel's usual place, the left not
            pts = scene.camera.project(scene.layout.positions[fc2.start : fc2.stop], 1920, 1080)
            node = fc2.start + int(end(pts[:, 0]))
            scene.state.selected = node
            for _ in range(6):
                frame(app)
            x, y = scene.camera.project(scene.layout.positions[node : node + 1], 1920, 1080)[0]
            details = scene.panels.rect("Node details")
            assert details is not None and not _contains(details, x, y), (end.__name__, (x, y), details)
            save(app.read_pixels(), tmp_path, "beside", f"details_{end.__name__}")
        scene.state.selected = -1
        scene.state.show_embedding = True
        frames_until(app, lambda: scene.panels.rect("Embedding") is not None, "the Embedding window")
        for _ in range(8):
            frame(app)
        embed = scene.panels.rect("Embedding")
        assert embed.right > 1800, f"docked at the right: {embed}"
        pts = scene.camera.project(scene.layout.positions, 1920, 1080)
        assert pts[:, 0].max() < embed.x + 2, f"the network reaches {pts[:, 0].max():.0f}, window {embed.x}"
        save(app.read_pixels(), tmp_path, "beside", "embedding")
    finally:
        app.close()


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1920, 1080), (1600, 900), (1280, 720)])
def test_the_training_embedding_window_covers_no_training_rows(ctx, tmp_path, size):
    """... and its plot is at least EMBED_PLOT_MIN high (it was 70 px at 1280x720), with the network framed
    clear of it."""
    from convscope.scenes.train.panels import EMBED_PLOT_MIN
    from convscope.scenes.train.scene import TrainScene
    from convscope.scenes.train.state import TrainConfig

    scene = TrainScene(TrainConfig(dataset="digits", start_paused=True))
    app = App(scene, ctx=ctx, size=size)
    try:
        frames_until(app, lambda: scene.snapshot is not None, "the training process")
        frames_until(app, lambda: embed_shown(app, "conv1", scene.state.widths[0]), "conv1's layout")
        for _ in range(8):
            frame(app)
        rects = {n: r for n, (_, r) in scene.panels.rects.items()}
        assert "Embedding" in rects and "Training" in rects, rects
        for other in ("Training", "Network"):
            assert not _overlap(rects["Embedding"], rects[other]), (size, rects)
        x0, y0, x1, y1 = scene.state.embed.plot_rect
        assert y1 - y0 >= EMBED_PLOT_MIN, f"at {size} the plot is {x1 - x0:.0f} x {y1 - y0:.0f} px"
        pts = scene.camera.project(scene.geometry.layout.positions, *size)
        box = (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())
        for name, r in rects.items():
            clear = box[2] < r.x or r.right < box[0] or box[3] < r.y or r.bottom < box[1]
            assert clear, f"at {size} the network {box} is under {name} {r}"
        save(app.read_pixels(), tmp_path, "beside", f"train_{size[0]}x{size[1]}")
    finally:
        app.close()
