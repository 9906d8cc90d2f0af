"""The supervisor keeps the app up: a crashing and a hung fake app (a tiny program, for speed) are
restarted with their output in a rotating log; then the real `convscope --kiosk` under Xvfb:
fullscreen, deaf to Escape / Alt+F4 / Ctrl+Q and to the window manager's close, restarted when
killed and when hung, and closed for good by the exit chord."""

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from convscope.scenes.kiosk.supervisor import Heartbeat, Supervisor, make_logger, next_daily, parse_daily
from xvfb_display import xdo, xvfb_screen

FAKE_APP = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    beat = Path(os.environ["CONVSCOPE_HEARTBEAT"])
    mode, runs = sys.argv[1], int(os.environ["CONVSCOPE_KIOSK_RESTARTS"])
    print(f"fake app run {runs} pid {os.getpid()}", flush=True)
    t0 = time.monotonic()
    while True:
        beat.touch()
        time.sleep(0.03)
        if time.monotonic() - t0 > 0.3:
            if mode == "crash" and runs < 2:
                raise RuntimeError(f"boom {runs}")
            if mode == "hang" and runs < 1:
                time.sleep(3600)  # alive, but no more frames
            if mode == "daily" and runs < 1:
                continue  # a healthy app that would run for ever
            sys.exit(0)  # the operator's exit chord
    """
)


def fake(tmp_path: Path, mode: str) -> list[str]:
    path = tmp_path / "fake_app.py"
    path.write_text(FAKE_APP)
    return [sys.executable, str(path), mode]


def test_a_crashing_app_is_restarted_and_its_traceback_goes_to_the_log(tmp_path):
    log = make_logger(tmp_path / "logs", max_bytes=10_000, backups=2)
    sup = Supervisor(fake(tmp_path, "crash"), log, hang_after=5, startup_grace=10, restart_delay=0.05)
    assert sup.run() == 0
    assert sup.restarts == 2 and sup.exits == [1, 1, 0] and sup.hangs == 0
    text = (tmp_path / "logs" / "kiosk.log").read_text()
    assert "RuntimeError: boom 0" in text and "RuntimeError: boom 1" in text and "Traceback" in text
    assert text.count("started app pid") == 3 and "closed by the operator" in text


def test_a_hung_app_is_killed_and_restarted(tmp_path):
    log = make_logger(tmp_path / "logs")
    sup = Supervisor(fake(tmp_path, "hang"), log, hang_after=0.6, startup_grace=10, restart_delay=0.05)
    assert sup.run() == 0
    assert sup.hangs == 1 and sup.restarts == 1 and sup.exits == [0]
    text = (tmp_path / "logs" / "kiosk.log").read_text()
    assert "no frame for" in text and "fake app run 1" in text


def test_a_daily_restart_at_a_set_local_time_on_a_fake_clock(tmp_path):
    """A healthy app, restarted once when the fake local clock passes 04:00; the next one is due a
    day later."""
    log = make_logger(tmp_path / "logs")
    t0, start = time.monotonic(), datetime(2026, 12, 7, 3, 59, 59, 300_000)

    def local_now():  # 03:59:59.3 at the start, then as fast as real time
        return start + timedelta(seconds=time.monotonic() - t0)

    sup = Supervisor(
        fake(tmp_path, "daily"),
        log,
        hang_after=5,
        startup_grace=10,
        daily_restart="04:00",
        local_now=local_now,
    )
    assert sup.run() == 0
    assert sup.daily_restarts == 1 and sup.restarts == 1 and sup.hangs == 0 and sup.exits == [0]
    assert sup._next_daily == datetime(2026, 12, 8, 4, 0)
    text = (tmp_path / "logs" / "kiosk.log").read_text()
    assert "daily restart (04:00)" in text and "fake app run 1" in text
    assert next_daily(parse_daily("04:00"), datetime(2026, 12, 7, 4, 0)) == datetime(2026, 12, 8, 4, 0)
    assert next_daily(parse_daily("23:59"), datetime(2026, 12, 31, 12, 0)) == datetime(2026, 12, 31, 23, 59)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_daily("4 am")


def test_logs_rotate(tmp_path):
    log = make_logger(tmp_path / "rot", max_bytes=10_000, backups=2)
    for i in range(2000):
        log.info("line %d %s", i, "x" * 40)
    files = sorted(p.name for p in (tmp_path / "rot").iterdir())
    assert files == ["kiosk.log", "kiosk.log.1", "kiosk.log.2"]
    assert all((tmp_path / "rot" / f).stat().st_size <= 10_000 for f in files)


def test_heartbeat_touches_at_most_twice_a_second(tmp_path):
    beat = Heartbeat(tmp_path / "hb", every=0.5)
    beat.beat(now=10.0)
    first = (tmp_path / "hb").stat().st_mtime_ns
    time.sleep(0.01)
    beat.beat(now=10.2)
    assert (tmp_path / "hb").stat().st_mtime_ns == first
    beat.beat(now=10.6)
    assert (tmp_path / "hb").stat().st_mtime_ns > first
    Heartbeat(None).beat()  # not supervised: nothing to do


# -- the real app in a real window ------------------------------------------------------------------


@pytest.fixture(scope="module")
def display():
    with xvfb_screen("1280x800", first=140, extra=("-noreset",)) as name:
        yield name


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def wm_close(display: str, window: int) -> None:
    """What a window manager sends for the close box or Alt+F4: WM_PROTOCOLS / WM_DELETE_WINDOW."""
    x11 = ctypes.cdll.LoadLibrary(ctypes.util.find_library("X11"))
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p]
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    dpy = x11.XOpenDisplay(display.encode())
    assert dpy, f"cannot open display {display}"
    ev = _XEvent()
    ev.xclient.type = 33  # ClientMessage
    ev.xclient.window = window
    ev.xclient.message_type = x11.XInternAtom(dpy, b"WM_PROTOCOLS", 0)
    ev.xclient.format = 32
    ev.xclient.data[0] = x11.XInternAtom(dpy, b"WM_DELETE_WINDOW", 0)
    x11.XSendEvent(dpy, window, 0, 0, ctypes.byref(ev))
    x11.XFlush(dpy)
    x11.XCloseDisplay(dpy)


def wait_for(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def app_pids(log: Path) -> list[int]:
    if not log.exists():
        return []
    return [
        int(x.split("started app pid ")[1].split(":")[0])
        for x in log.read_text().splitlines()
        if "started app pid" in x
    ]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


@pytest.mark.window
@pytest.mark.slow
def test_real_kiosk_is_locked_restarted_when_killed_or_hung_and_exits_by_chord(display, tmp_path):
    logs, startup = tmp_path / "logs", tmp_path / "startup.log"
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[kiosk]\nlog_dir = "{logs}"\nhang_after = 2\nattract_after = 2\nhide_cursor_after = 0.5\n'
    )
    env = {k: v for k, v in os.environ.items() if k != "PYOPENGL_PLATFORM"}
    env.update(DISPLAY=display, CONVSCOPE_STARTUP_LOG=str(startup))
    sup = subprocess.Popen(
        [sys.executable, "-m", "convscope.scenes.cli", "--kiosk", "--config", str(config), "--no-vsync"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = logs / "kiosk.log"
    frames_seen = lambda n: startup.exists() and startup.read_text().count("first_frame") >= n  # noqa: E731
    try:
        wait_for(lambda: frames_seen(1), 90, "the first frame")
        wid = wait_for(lambda: xdo(display, "search", "--name", "^convscope$"), 20, "the window").split()[0]
        geometry = xdo(display, "getwindowgeometry", wid)
        assert "1280x800" in geometry, geometry  # fullscreen on the only monitor
        first = app_pids(log)[0]
        # Ordinary ways out do nothing.
        xdo(display, "windowfocus", wid)
        for keys in ("Escape", "alt+F4", "ctrl+q", "ctrl+w", "ctrl+alt+q"):
            xdo(display, "key", "--window", wid, keys)
        wm_close(display, int(wid))
        time.sleep(1.5)
        assert alive(first) and app_pids(log) == [first], "an ordinary key or the close box ended the kiosk"
        # Killed: restarted.
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: app_pids(log)[1:2], 30, "a restart after SIGKILL")[0]
        wait_for(lambda: frames_seen(2), 90, "the restarted app's first frame")
        # Hung (stopped, so no frames): killed after hang_after seconds and restarted.  It has drawn
        # frames for a moment first (before its first heartbeat, start-up's longer grace applies).
        time.sleep(1.0)
        os.kill(second, signal.SIGSTOP)
        third = wait_for(lambda: app_pids(log)[2:3], 30, "a restart after a hang")[0]
        assert not alive(second)
        wait_for(lambda: frames_seen(3), 90, "the third app's first frame")
        wid = wait_for(lambda: xdo(display, "search", "--name", "^convscope$"), 20, "the window").split()[0]
        # The exit chord closes the app with status 0, and the supervisor with it.
        xdo(display, "windowfocus", wid)
        xdo(display, "key", "--window", wid, "ctrl+alt+shift+q")
        out, err = sup.communicate(timeout=30)
    finally:
        for pid in app_pids(log):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if sup.poll() is None:
            sup.kill()
            sup.wait()
    assert sup.returncode == 0, err
    text = log.read_text()
    assert "exited with status -9" in text and "no frame for" in text and "closed by the operator" in text
    assert not alive(third)
