"""PanelLayout in frames of ImGui (no GL, no window): a BESIDE band under the network ends the free area at
its top, and folding it gives the room back with a reflow (the scenes frame the network anew then);
`size_due` says when a panel sized by the layout is to be sized anew (a new display size), not in between.
Run: python -m pytest tests/test_panel_bands.py -q
"""

from __future__ import annotations

import pytest
from convscope.engine.ui.backend import UiBackend
from convscope.engine.ui.input import InputCollector
from convscope.engine.ui.layout import BESIDE, LEFT, RIGHT, PanelLayout
from imgui_bundle import imgui

SIZE = (1280, 720)
BAND = (372.0, 450.0)
PANELS = (("Left", LEFT, (330, 400)), ("Right", RIGHT, (360, 690)), ("Band", BESIDE, BAND))


class Frames:
    """A left column, a right column and a band beside the left column, `frame()` at a time."""

    def __init__(self) -> None:
        self.ui = UiBackend()
        self.input = InputCollector(SIZE, SIZE)
        self.layout = PanelLayout()
        self.fold_band: bool | None = None  # fold (True) or unfold (False) the band next frame

    def frame(self, size=SIZE) -> None:
        self.ui.new_frame(size, (1, 1), 1 / 60, self.input.snapshot())
        lay = self.layout
        lay.begin_frame(size, 1.0)
        for name, anchor, wh in PANELS:
            lay.place(name, anchor, always=anchor == BESIDE)
            if name == "Band" and self.fold_band is not None:
                imgui.set_next_window_collapsed(self.fold_band, imgui.Cond_.always)
            imgui.set_next_window_size(imgui.ImVec2(*wh), imgui.Cond_.always)
            imgui.begin(name, None, imgui.WindowFlags_.no_saved_settings)
            imgui.text(name)
            lay.keep_inside(name)
            imgui.end()
        self.fold_band = None
        self.ui.render()

    def close(self) -> None:
        self.ui.destroy()


@pytest.fixture
def frames():
    f = Frames()
    yield f
    f.close()


def test_the_free_area_ends_above_a_band_and_grows_back_when_it_folds(frames):
    for _ in range(6):
        frames.frame()
    lay = frames.layout
    band, left, right = lay.rect("Band"), lay.rect("Left"), lay.rect("Right")
    assert band.bottom == pytest.approx(SIZE[1] - lay.margin) and band.x > left.right, band
    free = lay.free(0.28)
    assert free.x == pytest.approx(left.right) and free.right == pytest.approx(right.x), free
    assert free.bottom == pytest.approx(band.y), f"the free area {free} should end at the band's top {band.y}"

    reflows = lay.reflows
    frames.fold_band = True
    for _ in range(4):
        frames.frame()
    folded = lay.rect("Band")
    assert folded.h < 40, folded
    assert lay.reflows > reflows, "a band that folds changes the free area: the layout reflows"
    assert lay.free(0.28).bottom == pytest.approx(folded.y), lay.free(0.28)

    # Too little height left above the band: the network gets the whole view instead.
    assert lay.free(0.99) == type(free)(0.0, 0.0, *SIZE)


def test_size_due_on_a_new_display_size_only():
    lay = PanelLayout()
    assert lay.size_due("Embedding", ((1280, 720), 1.0)), "the first frame sizes the panel"
    assert not lay.size_due("Embedding", ((1280, 720), 1.0)), "then the user may resize it"
    assert lay.size_due("Embedding", ((1920, 1080), 1.0))
    assert lay.size_due("Embedding", ((1920, 1080), 1.21)), "a new UI scale sizes it anew too"
    assert lay.size_due("Details", ((1920, 1080), 1.21)), "each panel has its own key"
