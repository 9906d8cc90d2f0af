"""The training scene driven headless in this process (TrainScene + a real training worker on the built-in
digits): it renders while training runs and the frames show the data; jitter and paths change the drawn
pixels; a click on a feature map selects its filter; a filter added through the panel's request grows the
network, its layout and its paths; a SIGKILLed worker is reported, restarted, and leaves no shared memory.

Frames are rendered offscreen (EGL, llvmpipe).  PNGs of the compared frames go to pytest's tmp_path.
Run: python -m pytest tests/test_train_scene.py -q
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from convscope.engine.app import App
from convscope.engine.proc.shm import list_segments, segment_prefix
from convscope.engine.ui.input import MOUSE_LEFT
from convscope.scenes.train.scene import TrainScene
from convscope.scenes.train.state import SPEEDS, TrainConfig
from gl_helpers import gl_context
from PIL import Image

pytestmark = pytest.mark.gl
W, H = 1280, 720
TIMEOUT = 120.0  # a fresh worker imports torch on 2 shared cores


@pytest.fixture(scope="module")
def app():
    ctx = gl_context()
    before = set(list_segments(segment_prefix()))
    cores = os.sched_getaffinity(0)
    scene = TrainScene(TrainConfig(dataset="digits", val_every=50, batch_size=8, lr=0.02))
    app = App(scene, ctx=ctx, size=(W, H))
    yield app
    app.close()
    assert set(list_segments(segment_prefix())) - before == set(), "shared-memory segments left behind"
    assert os.sched_getaffinity(0) == cores, "leaving the scene gives the render threads every core back"


def frame(app: App) -> None:
    app.frame()
    app.ctx.finish()  # headless frames are not throttled by a swap; keep llvmpipe from queueing them


def frames_until(app: App, cond, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() >= deadline:
            st = getattr(app.scene, "state", None)
            seen = f"step {st.step}, running {st.running}, message {st.message!r}" if st is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s; {seen}")
        frame(app)
        time.sleep(0.003)


def render_now(app: App) -> np.ndarray:
    """Upload and draw the scene's current data again (no worker poll, no panels): two calls with one
    view setting changed in between show exactly that setting's effect."""
    scene = app.scene
    scene.upload()
    app.offscreen.use()
    app.ctx.viewport = (0, 0, W, H)
    scene.draw((W, H))
    app.ctx.finish()
    return app.offscreen.read()


def changed_pixels(a: np.ndarray, b: np.ndarray, threshold: int = 24) -> int:
    return int((np.abs(a.astype(int) - b.astype(int)).sum(axis=2) > threshold).sum())


def test_renders_while_training(app, tmp_path):
    scene = app.scene
    frames_until(app, lambda: scene.snapshot is not None and scene.state.step > 0)
    step0 = scene.state.step
    frames_until(app, lambda: scene.state.step >= step0 + 12 and scene.state.running)
    assert scene.uploads > 1 and scene.state.nodes == 31_562 - 2 * 32 * 32  # one grey input channel, not 3
    loss = scene.state.charts.loss
    assert loss.n == scene.snapshot.step and loss.x[-1] == scene.snapshot.step, "every step's loss is charted"
    frame(app)
    img = app.read_pixels()
    Image.fromarray(img).save(tmp_path / "training.png")
    # The network occupies the middle of the frame: many pixels far from the grey background gradient.
    middle = img[:, 360:920].astype(int)
    colourful = (middle.max(axis=2) - middle.min(axis=2)) > 60
    assert colourful.sum() > 2000, "no coloured nodes or paths in the middle of the frame"
    # The monitored image is shown, and the guess is one of the classes.
    assert 0 <= scene.state.monitor_pred < 10 and scene.state.n_val > 0


def test_jitter_and_paths_change_the_pixels(app, tmp_path):
    scene, st = app.scene, app.scene.state
    frames_until(app, lambda: st.running and scene._jitter_nodes is not None)
    scene.time = 0.37  # a moment where every filter's offset is well away from zero
    st.jitter_gain = 6.0
    st.show_jitter, st.show_paths = False, False
    bare = render_now(app)
    st.show_jitter = True
    jitter = render_now(app)
    st.show_jitter, st.show_paths = False, True
    paths = render_now(app)
    for name, img in (("bare", bare), ("jitter", jitter), ("paths", paths)):
        Image.fromarray(img).save(tmp_path / f"{name}.png")
    assert scene.view.renderer.nodes.jitter_on is False
    assert changed_pixels(bare, jitter) > 500, "jitter moved no nodes"
    assert changed_pixels(bare, paths) > 500, "paths drew nothing"
    # Only the top half of each layer's maps get paths.
    widths = scene._path_widths
    assert 0 < np.count_nonzero(widths) < len(widths)
    st.show_jitter, st.jitter_gain = True, 4.0


def test_click_on_a_map_selects_its_filter(app, tmp_path):
    scene = app.scene
    frames_until(app, lambda: scene.geometry is not None)
    g = scene.geometry
    centre = g.centres["conv2"][10]
    x, y = scene.camera.project(centre[None], W, H)[0]
    sink = app.headless_input
    sink.on_cursor_pos(float(x), float(y))
    frame(app)
    sink.on_mouse_button(MOUSE_LEFT, True, 0)
    frame(app)
    sink.on_mouse_button(MOUSE_LEFT, False, 0)
    frame(app)
    assert scene.state.selected == (1, 10)
    frame(app)
    img = app.read_pixels()
    Image.fromarray(img).save(tmp_path / "selected.png")
    yellow = (img[..., 0] > 200) & (img[..., 1] > 200) & (img[..., 2] < 90)
    assert yellow[int(y) - 30 : int(y) + 30, int(x) - 40 : int(x) + 40].sum() > 20, "no outline drawn"


def test_add_filter_grows_network_layout_and_paths(app):
    scene, st = app.scene, app.scene.state
    frames_until(app, lambda: scene.geometry is not None)
    nodes, paths = st.nodes, len(scene.geometry.path_dst)
    st.request("add_filter", layer=0)
    frames_until(app, lambda: st.nodes > nodes and scene.snapshot is not None)
    assert st.nodes == nodes + 32 * 32 + 16 * 16  # conv1's map and its pooled map
    assert st.widths[0] == 17 and "added filter" in st.message
    # New paths: 1 input channel -> the filter, its map -> its pooled map, its pooled map -> conv2.
    assert len(scene.geometry.path_dst) == paths + 1 + 1 + st.widths[1]
    assert scene.view.renderer.nodes.count == st.nodes
    assert scene.snapshot.activations.shape == (st.nodes,)
    # Refused surgery is a message, not a crash.
    st.request("add_filter", layer=9)
    frames_until(app, lambda: st.message_is_error)
    assert scene.handle.alive


def test_killed_worker_is_reported_restarted_and_leaves_no_shared_memory(app):
    scene, st = app.scene, app.scene.state
    frames_until(app, lambda: scene.handle.ready)
    version = scene.handle.spec_version
    os.kill(scene.handle.pid, signal.SIGKILL)
    frames_until(app, lambda: st.worker_restarts == 1)
    assert "died" in (st.error or ""), st.error
    frames_until(app, lambda: scene.handle.spec_version > version and scene.snapshot is not None)
    frames_until(app, lambda: scene.handle.ready and st.step > 0 and st.error is None)
    assert scene.handle.alive and "restarted" in st.message
    assert st.widths[0] == 17, "the restarted worker keeps the architecture the user built"
    assert list_segments(segment_prefix()) == [], "segments must be unlinked once attached"
    _assert_worker_has_its_core(scene)  # the restarted worker too


def _assert_worker_has_its_core(scene) -> None:
    cores = scene._cores
    if cores is None or not cores.active:
        assert len(os.sched_getaffinity(0)) < 2, "a machine with 2+ cores reserves one for the worker"
        return
    everything = os.sched_getaffinity(scene.handle.pid)
    assert cores.reserved <= everything, "the worker may run on the reserved core"
    assert os.sched_getaffinity(0) == everything - cores.reserved, "the render thread keeps off it"
    embed_pid = scene.embedding.embed.pid
    if embed_pid is not None:
        assert not os.sched_getaffinity(embed_pid) & cores.reserved, "so does the t-SNE process"


def test_the_worker_gets_a_core_the_render_threads_leave(app):
    frames_until(app, lambda: app.scene.handle.ready)
    _assert_worker_has_its_core(app.scene)


def test_scene_switch_keeps_a_scene_it_leaves():
    from convscope.scenes.train.switch import SceneSwitch

    class Stub:
        """Records its lifecycle; draws a flat colour so the switch shows in the pixels."""

        def __init__(self, log: list, name: str, colour: tuple) -> None:
            self.log, self.name, self.colour = log, name, colour

        def on_enter(self, fc) -> None:
            self.ctx = fc.ctx
            self.log.append(("enter", self.name))

        def on_exit(self) -> None:
            self.log.append(("exit", self.name))

        def gui(self) -> None:
            pass

        def update(self, *args) -> None:
            pass

        def upload(self) -> None:
            pass

        def draw(self, viewport) -> None:
            self.ctx.clear(*self.colour, 1.0)

    log: list = []
    switch = SceneSwitch(
        {"Explore": lambda: Stub(log, "Explore", (1, 0, 0)), "Train": lambda: Stub(log, "Train", (0, 0, 1))},
        "Explore",
    )
    app = App(switch, ctx=gl_context(), size=(320, 200))
    try:
        frame(app)
        assert app.read_pixels()[10, 10].tolist() == [255, 0, 0]
        switch.wanted = "Train"
        frame(app)
        assert app.read_pixels()[10, 10].tolist() == [0, 0, 255]
        switch.wanted = "Explore"
        frame(app)
        assert app.read_pixels()[10, 10].tolist() == [255, 0, 0]
        switch.wanted = "Train"
        frame(app)
        assert app.read_pixels()[10, 10].tolist() == [0, 0, 255]
        # Each scene was entered once and kept while hidden (its worker running), none exited yet.
        assert log == [("enter", "Explore"), ("enter", "Train")]
    finally:
        app.close()
    assert sorted(log[2:]) == [("exit", "Explore"), ("exit", "Train")]


def test_diverging_lr_and_a_bad_checkpoint_are_messages_in_the_panel(app, tmp_path):
    scene, st = app.scene, app.scene.state
    frames_until(app, lambda: scene.handle.ready and st.running)
    st.request("set_hyper", lr=10.0)
    frames_until(app, lambda: not st.running and "paused" in st.message)
    assert st.message_is_error and scene.handle.alive
    assert np.all(np.isfinite(scene.snapshot.activations)), "the last good weights are shown"
    assert "before the change lr" in st.message, st.message  # the weights trained at lr 10 are not kept
    # ... and neither is lr 10: the controls show the settings the worker went back to.
    assert st.lr == pytest.approx(0.02) and scene.snapshot.stats["opt_lr"] == pytest.approx(0.02), st.lr
    step = st.step
    st.request("load", path=str(tmp_path / "missing.json"))
    frames_until(app, lambda: "not found" in st.message)
    assert st.message_is_error and st.step == step and not st.running
    st.request("resume")
    # The restored weights train on: well past the point of the blow-up with no new pause, and the red
    # message gives way once training runs healthily again.
    frames_until(app, lambda: st.step > step + 200)
    assert st.running and "paused" not in st.message and not st.message_is_error, st.message


def test_paths_are_one_per_filter_pair_and_only_the_top_half_is_drawn():
    from convscope.engine.graph.layout import build_layout
    from convscope.engine.graph.spec import NetSpec
    from convscope.models.revacnn import Arch, describe_arch
    from convscope.scenes.train.scene import Geometry, top_half

    spec = NetSpec.build("revacnn", describe_arch(Arch()))
    g = Geometry(build_layout(spec))
    # every input x conv1 pair, conv1 -> pool1 per channel, every pool1 x conv2 pair, and so on
    assert len(g.path_dst) == 3 * 16 + 16 + 16 * 20 + 20 + 20 * 20 + 20
    sums = np.arange(sum(x.shape[0] for x in g.grids), dtype=np.float64)[::-1].copy()  # distinct, falling
    widths = g.path_widths(sums)
    for layer in g.grids[1:]:
        at, c = g.sum_at[layer.name], layer.shape[0]
        drawn = {int(i) - at for i in np.unique(g.path_dst[widths > 0]) if at <= i < at + c}
        assert (
            drawn == set(np.flatnonzero(top_half(sums[at : at + c])).tolist()) and len(drawn) == (c + 1) // 2
        )
    # Wider for a larger map sum: within conv2 the paths into filter 0 (largest sum) are the widest.
    conv2 = g.sum_at["conv2"]
    assert widths[g.path_dst == conv2].min() > widths[(g.path_dst == conv2 + 9)].max()
    # Every conv filter's map and pooled map share one phase (they tremble together), other nodes none.
    conv1, pool1 = spec.layer("conv1"), spec.layer("pool1")
    assert np.all(g.filter_of_node[conv1.start : conv1.start + 1024] == 0)
    assert np.all(g.filter_of_node[pool1.start + 256 : pool1.start + 512] == 1)
    assert np.all(g.filter_of_node[: spec.layer("input").stop] == -1)


def test_chart_series_keep_their_shape_in_bounded_points():
    from convscope.scenes.train.state import Series

    s = Series(cap=4000)
    x = np.arange(10_000, dtype=np.float64)
    y = np.where(x == 7777, 50.0, np.sin(x))  # one spike
    for i in range(0, 10_000, 250):
        s.append(x[i : i + 250], y[i : i + 250])
    assert s.n <= 4000 and s.x[-1] == 9999 and np.all(np.diff(s.x) > 0)
    dx, dy = s.display(600)
    assert len(dx) <= 620 and dy.max() == 50.0, "the min/max buckets keep a spike"


@pytest.mark.slow
def test_command_line(tmp_path):
    import subprocess
    import sys

    from convscope.scenes.cli import main

    assert main(["--scene", "train", "--input", "x.png"]) == 2
    assert main(["--dataset", "mnist"]) == 2
    out = tmp_path / "train.png"
    cmd = [
        sys.executable,
        "-m",
        "convscope.scenes.cli",
        "--scene",
        "train",
        "--dataset",
        "digits",
        "--headless",
    ]
    cmd += ["--frames", "3", "--width", "640", "--height", "400", "--screenshot", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert img.shape == (400, 640, 3) and (img.max(axis=2) - img.min(axis=2) > 60).sum() > 1000


def test_speed_control_changes_the_steps_per_second(app):
    """At 2 steps/s the worker's own clock sees about 2 steps a second; back at full speed, many more."""
    scene, st = app.scene, app.scene.state
    frames_until(app, lambda: scene.handle.ready and scene.snapshot is not None)
    st.request("resume")
    frames_until(app, lambda: st.running)

    def rate_over(seconds: float) -> float:
        frames_until(app, lambda: scene.snapshot is not None)
        s0 = scene.snapshot.stats
        t_end = time.monotonic() + seconds
        frames_until(app, lambda: time.monotonic() > t_end)
        s1 = scene.snapshot.stats
        return (s1["step"] - s0["step"]) / max(s1["clock"] - s0["clock"], 1e-6)

    st.speed = SPEEDS.index(2.0)
    st.request("set_speed", steps_per_s=2.0)
    rate_over(0.6)  # let the new limit take hold
    slow = rate_over(3.0)
    assert 1.3 <= slow <= 2.7, f"{slow:.2f} steps/s at a limit of 2"
    assert 1.0 <= st.steps_per_s <= 3.0, st.steps_per_s  # what the panel shows
    st.speed = len(SPEEDS) - 1
    st.request("set_speed", steps_per_s=0)
    rate_over(0.5)
    fast = rate_over(2.0)
    # (a loaded 2-core test machine manages ~20 steps/s at full speed; a laptop well over 100)
    assert fast > 4 * slow, f"full speed {fast:.1f} steps/s vs {slow:.2f} at the limit"


def test_one_grey_channel_and_a_colour_range_that_lights_most_maps(app, tmp_path):
    """The grey digits run as one input channel; under the robust range (default) or the per-map range,
    conv1's maps with any signal show colour, where min-max per layer can leave many at the bottom."""
    from convscope.engine.gpu.normalize import layer_ranges

    scene, st = app.scene, app.scene.state
    frames_until(app, lambda: scene.snapshot is not None and st.step > 100)
    assert scene.spec.layers[0].shape == (1, 32, 32)
    conv1 = scene.spec.layer("conv1")

    def lit_maps(mode: str) -> int:
        st.color_range = mode
        values, ranges = scene.colour_values()
        if ranges is None:
            ranges = layer_ranges(scene.spec, values, "layer")
        lo, hi = ranges[scene.spec.index("conv1")]
        t = np.clip((values[conv1.start : conv1.stop] - lo) / (hi - lo), 0, 1).reshape(conv1.shape[0], -1)
        return int((t.max(axis=1) > 0.3).sum())  # maps with some node well above the bottom colour

    lit = {mode: lit_maps(mode) for mode in ("layer", "robust", "map")}
    st.color_range = "robust"
    # On the live run: per map, every map with any signal lights up, and the robust range never lights
    # fewer than min-max per layer does.  How many maps carry signal depends on what the run has learnt
    # by now (the earlier tests of this module drive it hard), so "most" is checked on fixed values.
    assert lit["map"] >= lit["robust"] >= lit["layer"], lit

    from convscope.engine.gpu.normalize import robust_ranges

    rng = np.random.default_rng(0)
    values = np.zeros(scene.spec.total_nodes, np.float32)
    maps = rng.uniform(0.0, 1.0, (conv1.shape[0], conv1.shape[1] * conv1.shape[2])).astype(np.float32)
    maps *= np.geomspace(0.5, 2.0, conv1.shape[0], dtype=np.float32)[:, None]  # peaks spread 4x
    maps[0] *= 20.0  # one strong map: under min-max per layer it leaves the others dark
    values[conv1.start : conv1.stop] = maps.reshape(-1)
    lo, hi = robust_ranges(scene.spec, values)[scene.spec.index("conv1")]
    lo_layer, hi_layer = layer_ranges(scene.spec, values, "layer")[scene.spec.index("conv1")]
    peaks = maps.max(axis=1)
    robust_lit = int(((peaks - lo) / (hi - lo) > 0.3).sum())
    layer_lit = int(((peaks - lo_layer) / (hi_layer - lo_layer) > 0.3).sum())
    assert layer_lit <= 2 and robust_lit > 0.75 * conv1.shape[0], (layer_lit, robust_lit)


def test_monitor_cycles_through_held_out_images(app, monkeypatch):
    import convscope.scenes.train.scene as train_scene

    scene, st = app.scene, app.scene.state
    monkeypatch.setattr(train_scene, "MONITOR_CYCLE_S", 0.3)
    frames_until(app, lambda: scene.snapshot is not None and st.running)
    first = st.monitor_index
    st.monitor_cycle = True
    frames_until(app, lambda: st.monitor_index == (first + 1) % st.n_val)
    frames_until(app, lambda: st.monitor_index == (first + 2) % st.n_val)
    st.monitor_cycle = False


def test_a_blow_up_after_a_layer_edit_shows_the_restored_lr_and_the_clip(app):
    """'+ layer', then lr 10 by hand: the guard restores the weights and the settings from before, and the
    controls show the lr that was set (0.02), not the optimizer's, which the warm-up that starts over holds
    at a tenth; the clip the edit turned on (and lr 10 turned off) is on again, and the panel says both."""
    from convscope.scenes.train.panels import _step_note

    scene, st = app.scene, app.scene.state
    frames_until(app, lambda: scene.handle.ready and st.running)
    layers = len(st.widths)
    st.request("add_layer", position=layers, width=4)
    frames_until(app, lambda: len(st.widths) == layers + 1 and st.warm_left > 0)
    assert st.clip_norm == 1.0 and "warming up after the layer edit" in _step_note(st), _step_note(st)
    st.lr = 10.0  # what the slider does, and the request it makes
    st.request("set_hyper", lr=10.0)
    frames_until(app, lambda: not st.running and "paused" in st.message)
    stats = scene.snapshot.stats
    assert "layer edit" in st.message, st.message
    assert stats["hyper_lr"] == pytest.approx(0.02) and stats["opt_lr"] == pytest.approx(0.002), stats
    assert st.lr == pytest.approx(0.02), f"the controls show lr {st.lr}, the worker uses {stats['hyper_lr']}"
    assert st.clip_norm == 1.0 and "gradient norm clipped to 1" in _step_note(st), _step_note(st)
    st.request("remove_layer", layer=layers)
    frames_until(app, lambda: len(st.widths) == layers)


@pytest.mark.slow
def test_train_explore_train_keeps_the_run():
    """Train -> Explore -> Train in one window: the training process keeps running while the explorer is
    shown (its step count grows meanwhile) and the training scene comes back with the same run."""
    from convscope.engine.config import AppConfig
    from convscope.scenes.explore.scene import ExploreScene
    from convscope.scenes.train.switch import SceneSwitch

    before = set(list_segments(segment_prefix()))
    config = TrainConfig(dataset="digits", batch_size=8, lr=0.02, reserve_core=False)
    switch = SceneSwitch(
        {"Explore": lambda: ExploreScene(AppConfig()), "Train": lambda: TrainScene(config)}, "Train"
    )
    app = App(switch, ctx=gl_context(), size=(W, H))
    try:
        train = switch.scene
        frames_until(app, lambda: train.handle.ready and train.state.running and train.state.step > 20)
        pid, step = train.handle.pid, train.state.step
        switch.wanted = "Explore"
        explore = None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            frame(app)
            explore = switch.scene
            if explore.worker.ready and explore.activations is not None:
                break
        assert isinstance(explore, ExploreScene) and explore.activations is not None, "the explorer came up"
        assert train.handle.alive and train.handle.pid == pid, "the training process lives on behind it"
        assert train.state.step > step, "the step counter kept up while the explorer was shown"
        switch.wanted = "Train"
        frame(app)
        assert switch.scene is train, "the same training scene, not a new one"
        # Every step taken meanwhile is in the loss chart: no straight line across the time away.
        back, loss = train.state.step, train.state.charts.loss
        assert loss.n < loss.cap
        away = loss.x[loss.x > step]
        np.testing.assert_array_equal(away[: back - step], np.arange(step + 1, back + 1, dtype=np.float64))
        frames_until(app, lambda: train.state.step > step + 20)
        assert train.handle.pid == pid and train.handle.restarts == 0
        # Both scenes have a "Network" panel (one ImGui window name): the training scene's is back at the
        # right edge, not left where the explorer had it.
        network = train.panels.rect("Network")
        assert network is not None and network.x > W / 2, network
    finally:
        app.close()
    assert set(list_segments(segment_prefix())) - before == set(), "shared-memory segments left behind"
