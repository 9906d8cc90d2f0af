"""Flying to one layer in the explorer: PageUp / PageDown step through the layers and a name in the
Network panel's layer list flies to it; the layer then fills much of the free area, in its middle, and
F (Fit all) brings the whole network back.  Shipped LeNet in a real headless scene at 1280 x 720.
Screenshot: out/screens/fly_to_layer.png.
"""

from __future__ import annotations

import glfw
import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.config import AppConfig
from convscope.engine.ui.input import KEY_PRESS, KEY_RELEASE
from convscope.scenes.explore.scene import ExploreScene
from PIL import Image
from ui_driver import SCREENS, frame, frames_until

pytestmark = pytest.mark.gl


def press(app: App, key: int) -> None:
    app.headless_input.on_key(key, KEY_PRESS, 0)
    app.headless_input.on_key(key, KEY_RELEASE, 0)
    frame(app)


def settle(app: App, scene: ExploreScene) -> None:
    """Frames until the flight has landed (and one more, drawn from there)."""
    frames_until(app, lambda: scene.controller.flight is None, "the flight to land")
    frame(app)


def box_on_screen(scene: ExploreScene, index: int, size) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) in pixels of layer `index`'s bounding box as the camera sees it now."""
    lo, hi = scene.layout.layer_bounds[index]
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    p = scene.camera.project(corners, *size)
    return p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()


def test_page_keys_and_layer_names_fly_to_a_layer_and_f_fits_all_again(ctx):
    size = (1280, 720)
    from test_details import digit

    scene = ExploreScene(AppConfig(pad_size=280), drawing=digit())
    app = App(scene, ctx=ctx, size=size)
    try:
        frames_until(app, lambda: scene.ready and scene.activations is not None, "the network's answer")
        for _ in range(4):
            frame(app)
        names = scene.state.layer_names
        home = box_on_screen(scene, 0, size)
        fx, fy, fw, fh = scene._free_region(size)

        press(app, glfw.KEY_PAGE_UP)  # from the whole view: the first layer up, the input
        assert scene.state.current_layer == 0
        settle(app, scene)
        x0, y0, x1, y1 = box_on_screen(scene, 0, size)
        assert fx - 2 <= x0 and x1 <= fx + fw + 2 and fy - 2 <= y0 and y1 <= fy + fh + 2, "off the free area"
        assert (x1 - x0) > 0.3 * fw or (y1 - y0) > 0.45 * fh, "the layer does not fill the view"
        assert (x1 - x0) > 3 * (home[2] - home[0]), "no closer than the whole view"
        assert abs((x0 + x1) / 2 - (fx + fw / 2)) < 0.1 * fw, "not in the middle of the free area"
        shot = app.read_pixels()
        SCREENS.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shot).save(SCREENS / "fly_to_layer.png")
        # The input's pixels are what fills the middle of the view now (coloured, not background).
        mid = shot[int(y0) : int(y1), int(x0) : int(x1)].astype(int)
        assert (mid.max(axis=2) - mid.min(axis=2) > 60).mean() > 0.2, "no coloured nodes where the input is"

        press(app, glfw.KEY_PAGE_UP)
        press(app, glfw.KEY_PAGE_UP)
        press(app, glfw.KEY_PAGE_DOWN)  # input -> conv1 -> pool -> conv1
        settle(app, scene)
        i = scene.state.current_layer
        assert names[i] == "conv1", names[i]
        x0, y0, x1, y1 = box_on_screen(scene, i, size)
        assert fx - 2 <= x0 and x1 <= fx + fw + 2 and fy - 2 <= y0 and y1 <= fy + fh + 2, "off the free area"
        press(app, glfw.KEY_PAGE_DOWN)
        assert names[scene.state.current_layer] == names[i - 1]
        # The panel's layer list: a hidden layer asked for is shown, then flown to.
        last = len(names) - 1
        scene.state.layer_visible[last] = False
        scene.state.layers_changed = True
        frame(app)
        scene.state.fly_to = last
        frame(app)
        assert scene.state.layer_visible[last] and scene.state.current_layer == last
        settle(app, scene)
        x0, y0, x1, y1 = box_on_screen(scene, last, size)
        assert fx - 2 <= x0 and x1 <= fx + fw + 2, "the output layer is off the free area"

        press(app, glfw.KEY_F)
        frame(app)
        assert scene.state.current_layer == -1 and scene.controller.at_home()
        again = box_on_screen(scene, 0, size)
        np.testing.assert_allclose(again, home, atol=2.0)
    finally:
        app.close()
