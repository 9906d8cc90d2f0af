"""Morph: slide the network input from one drawing to another and plot each class's probability along
the way (Harley 2015: "gradually morph a 1 into a 2").

Owns `MorphState` (slots A and B, the slider t, the probability curve), `gui_morph` (its panel, with an
ImPlot line plot), and `load_idx_digits`, a numpy reader of MNIST's IDX files for test-set digits as
A or B.  No torch, no GL and no worker: the scene owns the worker and runs the curve's images for us.

The input at t is (1 - t) * A + t * B, pixel by pixel (a cross-fade, like the paper's pen-and-eraser
morph at its midpoint: both digits faint at once).  The curve is `steps` (21) such inputs at
t = 0, 0.05, ..., 1, computed once whenever A or B changes.

Per frame, in the scene:

    gui_morph(ms, state.network_input)          # panel: capture A / B, slide t (edits ms only)
    images = ms.requests()                      # (steps, 28, 28) once after A or B changed, else empty
    if len(images):
        batch = worker.infer_batch(images)      # one request, answered a few frames later
    got = worker.batch(batch)                   # each frame until it is there (never blocks)
    if got is not None:
        ms.take(got.probabilities)              # False (ignored) if A / B changed meanwhile
    if ms.active and ms.take_input_changed():   # t, A or B moved while the morph drives the input
        state.network_input = ms.image()
        worker.submit(state.network_input)      # what the network sees is the blend itself
    if ms.take_back_to_pad():                   # "back to the pad": the network sees the drawing again
        worker.submit(pad_input)

The pad itself is never changed by the morph: its drawing stays as it was while the blend is shown.
"A / B = drawing" capture the pad's drawing (what the network sees of the pad), not the blend.

The ImPlot context must exist next to ImGui's (implot.create_context() after imgui's).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from imgui_bundle import imgui, implot

INPUT_SHAPE = (28, 28)
STEPS = 21  # points on the curve: t = 0, 0.05, ..., 1
N_CLASSES = 10

# Line colours for classes 0-9 (matplotlib's tab10), so a digit keeps its colour between runs.
_CLASS_RGB = (
    (0.12, 0.47, 0.71),
    (1.00, 0.50, 0.05),
    (0.17, 0.63, 0.17),
    (0.84, 0.15, 0.16),
    (0.58, 0.40, 0.74),
    (0.55, 0.34, 0.29),
    (0.89, 0.47, 0.76),
    (0.50, 0.50, 0.50),
    (0.74, 0.74, 0.13),
    (0.09, 0.75, 0.81),
)
_DIM = imgui.ImVec4(0.75, 0.78, 0.85, 1.0)


def _as_input(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, np.float32)
    if a.shape != INPUT_SHAPE:
        raise ValueError(f"a morph end must be a {INPUT_SHAPE} image, got shape {a.shape}")
    return np.clip(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0), 0.0, 1.0)


def blend(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """(1 - t) * a + t * b as float32 (t = 0 gives a exactly, t = 1 gives b exactly)."""
    t = float(np.clip(t, 0.0, 1.0))
    if t == 0.0:
        return np.array(a, np.float32)
    if t == 1.0:
        return np.array(b, np.float32)
    return ((1.0 - t) * np.asarray(a, np.float32) + t * np.asarray(b, np.float32)).astype(np.float32)


@dataclass
class MorphState:
    steps: int = STEPS  # points on the probability curve
    t: float = 0.0  # slider position: 0 = A, 1 = B
    active: bool = False  # the morph drives the network input (set when both ends exist and t is moved)
    a: np.ndarray | None = field(default=None, repr=False)  # (28, 28) float32 slot A
    b: np.ndarray | None = field(default=None, repr=False)  # (28, 28) float32 slot B
    a_label: str = ""  # where A came from ("drawing", "test digit 7 (#123)")
    b_label: str = ""
    curve: np.ndarray | None = field(default=None, repr=False)  # (steps, 10) probabilities, row i at ts[i]
    classes: tuple[str, ...] = tuple(str(i) for i in range(N_CLASSES))
    test_images: np.ndarray | None = field(default=None, repr=False)  # (N, 28, 28) float32, optional
    test_labels: np.ndarray | None = field(default=None, repr=False)  # (N,) ints, optional
    test_index: int = 0  # test digit the panel offers
    # Where the panel last drew each button (window coordinates, centre), for scripted-input tests.
    button_centers: dict[str, tuple[float, float]] = field(default_factory=dict, repr=False)
    _version: int = field(default=0, repr=False)  # bumps when A or B changes
    _requested: int = field(default=0, repr=False)  # _version the newest requests() served
    _input_changed: bool = field(default=False, repr=False)
    _back_to_pad: bool = field(default=False, repr=False)  # stop() ended an active morph: resend the pad

    @property
    def ts(self) -> np.ndarray:
        """The t of each curve row."""
        return np.linspace(0.0, 1.0, self.steps, dtype=np.float32)

    @property
    def ready(self) -> bool:
        """Both ends are set."""
        return self.a is not None and self.b is not None

    def set_a(self, image: np.ndarray, label: str = "drawing") -> None:
        self.a, self.a_label = _as_input(image).copy(), label
        self._ends_changed()

    def set_b(self, image: np.ndarray, label: str = "drawing") -> None:
        self.b, self.b_label = _as_input(image).copy(), label
        self._ends_changed()

    def set_t(self, t: float) -> None:
        t = float(np.clip(t, 0.0, 1.0))
        if t != self.t or not self.active:
            self.t = t
            self.active = self.ready
            self._input_changed = self.active

    def stop(self) -> None:
        """Give the input back to the drawing pad.  The network still holds the blend until the scene
        sends the pad's drawing again: `take_back_to_pad` says when it must."""
        if self.active:
            self._back_to_pad = True
        self.active = False
        self._input_changed = False

    def take_back_to_pad(self) -> bool:
        """Whether stop() ended an active morph since the previous call (the pad's drawing must be sent)."""
        back, self._back_to_pad = self._back_to_pad, False
        return back

    def _ends_changed(self) -> None:
        self._version += 1
        self.curve = None
        self._input_changed = self.active

    def image(self, t: float | None = None) -> np.ndarray:
        """The network input at `t` (default: the slider's); needs both ends."""
        if not self.ready:
            raise RuntimeError("morph needs both A and B")
        return blend(self.a, self.b, self.t if t is None else t)

    def take_input_changed(self) -> bool:
        """Whether the blended input changed since the previous call (and the morph is active)."""
        changed, self._input_changed = self._input_changed and self.active, False
        return changed

    def requests(self) -> np.ndarray:
        """The images whose class probabilities make the curve, (steps, 28, 28) float32, once per
        change of A or B; an empty (0, 28, 28) array otherwise (or while an end is missing)."""
        if not self.ready or self._requested == self._version:
            return np.zeros((0, *INPUT_SHAPE), np.float32)
        self._requested = self._version
        return np.stack([blend(self.a, self.b, t) for t in self.ts])

    def ask_again(self) -> None:
        """The newest requests() went unanswered (the worker restarted): requests() serves it again."""
        if self._requested == self._version:
            self._requested = -1

    def take(self, probabilities: list[np.ndarray] | np.ndarray) -> bool:
        """The probabilities of the images of the newest requests(), in order.  Returns False (and keeps
        nothing) when A or B changed after that request, so late results cannot label a new pair."""
        if self._requested != self._version or not self.ready:
            return False
        p = np.asarray(probabilities, np.float32)
        if p.shape != (self.steps, N_CLASSES):
            raise ValueError(f"morph curve needs ({self.steps}, {N_CLASSES}) probabilities, got {p.shape}")
        self.curve = np.nan_to_num(p, nan=0.0)
        return True

    def pending(self) -> bool:
        """A curve was asked for and has not come back."""
        return self.ready and self.curve is None and self._requested == self._version

    def winners(self) -> list[int]:
        """The top class at each curve point (empty without a curve)."""
        return [] if self.curve is None else [int(i) for i in self.curve.argmax(axis=1)]


# -- test-set digits ------------------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(np.int64)
    count = int(np.prod(dims))
    start = 4 + 4 * ndim
    if len(data) - start < count:
        raise ValueError(f"{path}: truncated ({len(data) - start} of {count} bytes)")
    return np.frombuffer(data, np.uint8, count=count, offset=start).reshape(tuple(dims))


def _find(root: Path, name: str) -> Path | None:
    for folder in (root / "MNIST" / "raw", root / "raw", root):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def load_idx_digits(root: str | Path, limit: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The first `limit` MNIST test digits under `root` (torchvision's layout root/MNIST/raw, or the IDX
    files in root itself, gzipped or not): images (N, 28, 28) float32 in [0, 1] and labels (N,) int64.
    FileNotFoundError / ValueError name the file when absent or malformed."""
    root = Path(root)
    images_path = _find(root, "t10k-images-idx3-ubyte")
    labels_path = _find(root, "t10k-labels-idx1-ubyte")
    if images_path is None or labels_path is None:
        raise FileNotFoundError(
            f"no MNIST test files (t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte) under {root}"
        )
    images = _read_idx(images_path)
    labels = _read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != INPUT_SHAPE or labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(f"{images_path}: unexpected shapes {images.shape} / {labels.shape}")
    n = min(int(limit), len(images))
    return images[:n].astype(np.float32) / 255.0, labels[:n].astype(np.int64)


# -- the panel ------------------------------------------------------------------------------------------


def _button(ms: MorphState, key: str, label: str) -> bool:
    clicked = imgui.button(label)
    lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    ms.button_centers[key] = ((lo.x + hi.x) / 2, (lo.y + hi.y) / 2)
    return clicked


def gui_morph(
    ms: MorphState, current: np.ndarray | None, plot_size: tuple[float, float] = (320.0, 180.0)
) -> None:
    """Capture A / B, slide between them, and the probability curve; inside the caller's window.
    `current`: the pad's drawing as the network sees it (what "A / B = drawing" capture; not the blend
    the morph may be showing).  Only edits `ms`."""
    imgui.push_id("morph")
    has_current = current is not None and np.asarray(current).shape == INPUT_SHAPE
    imgui.begin_disabled(not has_current)
    if _button(ms, "set_a", "A = drawing"):
        ms.set_a(current)
    imgui.same_line()
    if _button(ms, "set_b", "B = drawing"):
        ms.set_b(current)
    imgui.end_disabled()
    imgui.same_line()
    imgui.text_colored(_DIM, f"A: {ms.a_label or '-'}   B: {ms.b_label or '-'}")

    if ms.test_images is not None and len(ms.test_images):
        n = len(ms.test_images)
        imgui.set_next_item_width(imgui.get_font_size() * 6)
        _, ms.test_index = imgui.input_int("test digit", ms.test_index)
        ms.test_index = int(np.clip(ms.test_index, 0, n - 1))
        label = f"test #{ms.test_index}"
        if ms.test_labels is not None:
            label += f" (a {int(ms.test_labels[ms.test_index])})"
        imgui.same_line()
        imgui.text_colored(_DIM, label)
        imgui.same_line()
        if _button(ms, "test_a", "-> A"):
            ms.set_a(ms.test_images[ms.test_index], label)
        imgui.same_line()
        if _button(ms, "test_b", "-> B"):
            ms.set_b(ms.test_images[ms.test_index], label)

    imgui.begin_disabled(not ms.ready)
    imgui.set_next_item_width(plot_size[0])
    changed, t = imgui.slider_float("t##morph_t", ms.t, 0.0, 1.0, "A %.2f B")
    lo, hi = imgui.get_item_rect_min(), imgui.get_item_rect_max()
    ms.button_centers["slider"] = (lo.x, (lo.y + hi.y) / 2)
    ms.button_centers["slider_end"] = (lo.x + plot_size[0], (lo.y + hi.y) / 2)
    if changed:
        ms.set_t(t)
    imgui.same_line()
    if _button(ms, "stop", "back to the pad"):
        ms.stop()
    imgui.end_disabled()

    if not ms.ready:
        imgui.text_colored(_DIM, "capture two drawings to morph between them")
    elif ms.curve is None:
        imgui.text_colored(_DIM, "computing the curve...")
    else:
        _plot_curve(ms, plot_size)
    imgui.pop_id()


def _plot_curve(ms: MorphState, size: tuple[float, float]) -> None:
    flags = implot.Flags_.no_mouse_text | implot.Flags_.no_box_select
    if not implot.begin_plot("##morph_curve", imgui.ImVec2(*size), flags):
        return
    axis = implot.AxisFlags_.lock
    implot.setup_axes("t (A -> B)", "class probability", axis, axis)
    # A little room above 1 and below 0, so lines lying on the limits are not half clipped away.
    implot.setup_axes_limits(0.0, 1.0, -0.03, 1.03, imgui.Cond_.always)
    implot.setup_legend(implot.Location_.east, implot.LegendFlags_.outside)
    xs = ms.ts.astype(np.float64)
    for k in range(N_CLASSES):
        ys = np.ascontiguousarray(ms.curve[:, k], dtype=np.float64)
        # Classes that never matter stay thin, so the two or three that trade places stand out.
        spec = implot.Spec(
            line_color=imgui.ImVec4(*_CLASS_RGB[k], 1.0), line_weight=2.5 if ys.max() > 0.05 else 1.0
        )
        implot.plot_line(ms.classes[k], xs, ys, spec)
    # The slider's position as a vertical line that can be dragged too.
    changed, t, *_ = implot.drag_line_x(0, float(ms.t), imgui.ImVec4(1.0, 1.0, 1.0, 0.8), 1.5)
    if changed:
        ms.set_t(t)
    implot.end_plot()
