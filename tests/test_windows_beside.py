"""Windows open beside what they refer to (headless, real scenes): Node details never covers the node it
explains (a node at the right end of fc2 sends it beside the left column), the explorer's Embedding window
docks at the right and the network is framed left of it, and the training scene's Embedding window
never covers the Training panel's rows (Hyperparameters open at 900 px high).
Screenshots: out/screens/beside_<name>.png.
"""

from __future__ import annotations

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from ui_driver import frame, frames_until, save

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
@pytest.mark.parametrize("size", [(1600, 900), (1280, 720)])
def test_the_training_embedding_window_covers_no_training_rows(ctx, tmp_path, size):
    from convscope.scenes.train.scene import TrainScene
    from convscope.scenes.train.state import TrainConfig

    scene = TrainScene(TrainConfig(dataset="digits", start_paused=True))
    app = App(scene, ctx=ctx, size=size)
    try:
        frames_until(app, lambda: scene.snapshot is not None, "the training process")
        for _ in range(8):
            frame(app)
        rects = {n: r for n, (_, r) in scene.panels.rects.items()}
        assert "Embedding" in rects and "Training" in rects, rects
        for other in ("Training", "Network"):
            assert not _overlap(rects["Embedding"], rects[other]), (size, rects)
        save(app.read_pixels(), tmp_path, "beside", f"train_{size[0]}x{size[1]}")
    finally:
        app.close()
