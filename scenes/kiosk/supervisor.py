"""The kiosk supervisor: keeps the app running for days, and keeps its logs from filling the disk.

`convscope --kiosk` runs this (stdlib only: no GL, no torch), which starts the app itself as a
child (`convscope --kiosk --no-supervisor ...`) and restarts it when

* it exits with any status but 0 (0 means the operator used the exit chord or PIN: we stop too),
* it stops producing frames: the app touches a heartbeat file at least twice a second
  (`Heartbeat`, path in $CONVSCOPE_HEARTBEAT); no touch for `hang_after` seconds (10) means hung,
  and a (re)started app has `startup_grace` seconds to show its first frame.

* optionally, once a day at a set local time (`daily_restart = "04:30"`): a fresh process each
  morning, whatever a long run has accumulated; the restart is logged and does not back off.

A hung app gets SIGTERM, then SIGKILL after a few seconds.  Quick repeated failures back off
(1 s, 2 s, 4 s ... up to 30 s) so a broken install does not spin.  The relaunched app shows only
a dark "Restarting..." card until its network answers ($CONVSCOPE_KIOSK_RESTARTS > 0).

Everything the app prints (a traceback included) goes to a rotating log
(logging.handlers.RotatingFileHandler: kiosk.log, kiosk.log.1 ...), never to the screen.

Standalone:  python -m scenes.kiosk.supervisor [--log-dir DIR] -- COMMAND ...
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from datetime import time as clock_time
from pathlib import Path

HEARTBEAT_ENV = "CONVSCOPE_HEARTBEAT"
RESTARTS_ENV = "CONVSCOPE_KIOSK_RESTARTS"
QUICK_FAILURE_S = 30.0  # a child that dies sooner than this counts toward the back-off
MAX_DELAY_S = 30.0
KILL_GRACE_S = 3.0  # SIGTERM, then this long, then SIGKILL


class Heartbeat:
    """The app's side: `beat()` every frame; the file's mtime moves at most every `every` seconds."""

    def __init__(self, path: str | os.PathLike | None, every: float = 0.5) -> None:
        self.path = Path(path) if path else None
        self.every = every
        self._last = -1e9

    @classmethod
    def from_env(cls) -> Heartbeat:
        return cls(os.environ.get(HEARTBEAT_ENV) or None)

    def beat(self, now: float | None = None) -> None:
        if self.path is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last < self.every:
            return
        self._last = now
        try:
            self.path.touch()
        except OSError:
            pass  # a full or read-only disk must not take the exhibit down; the supervisor will notice


def default_log_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "convscope"
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "convscope"


def make_logger(
    log_dir: str | os.PathLike | None, max_bytes: int = 1_000_000, backups: int = 5
) -> logging.Logger:
    """A logger writing to log_dir/kiosk.log, rotated at `max_bytes`, keeping `backups` old files."""
    folder = Path(log_dir) if log_dir else default_log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(f"convscope.kiosk.{folder}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.handlers.RotatingFileHandler(
            folder / "kiosk.log", maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def parse_daily(text: str) -> clock_time:
    """'04:30' -> a local time of day; ValueError otherwise."""
    try:
        hours, minutes = (int(part) for part in text.strip().split(":"))
        return clock_time(hours, minutes)
    except ValueError:
        raise ValueError(f"{text!r} is not a time of day as HH:MM (24 h), e.g. '04:30'") from None


def next_daily(at: clock_time, now: datetime) -> datetime:
    """The first local `at` strictly after `now` (naive local datetimes)."""
    today = datetime.combine(now.date(), at)
    return today if today > now else datetime.combine(now.date() + timedelta(days=1), at)


class Supervisor:
    """Runs `command` until it exits with status 0 or `stop()` is called; see the module docstring."""

    def __init__(
        self,
        command: Sequence[str],
        logger: logging.Logger,
        *,
        hang_after: float = 10.0,
        startup_grace: float = 60.0,
        restart_delay: float = 1.0,
        heartbeat: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
        poll_s: float = 0.2,
        clock: Callable[[], float] = time.time,  # wall clock: it is compared with file mtimes
        daily_restart: str = "",  # "HH:MM" local time for a fresh app every day; "" = never
        local_now: Callable[[], datetime] = datetime.now,  # local time of day, for daily_restart
    ) -> None:
        self.command = list(command)
        self.log = logger
        self.hang_after = hang_after
        self.startup_grace = startup_grace
        self.restart_delay = restart_delay
        self.poll_s = poll_s
        self.clock = clock
        self.daily_at = parse_daily(daily_restart) if daily_restart else None
        self.local_now = local_now
        self.daily_restarts = 0
        self._next_daily: datetime | None = None
        self.env = dict(os.environ if env is None else env)
        self._own_heartbeat = heartbeat is None
        if heartbeat is None:
            fd, name = tempfile.mkstemp(prefix="convscope-heartbeat-")
            os.close(fd)
            heartbeat = name
        self.heartbeat = Path(heartbeat)
        self.child: subprocess.Popen | None = None
        self.restarts = 0
        self.hangs = 0
        self.exits: list[int] = []  # exit statuses of children that ended by themselves
        self._stop = threading.Event()
        self._launched = 0.0
        self._quick_failures = 0

    # -- control ------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask `run()` to end the child and return (from a signal handler or another thread)."""
        self._stop.set()

    def run(self) -> int:
        try:
            self._launch()
            while not self._stop.wait(self.poll_s):
                status = self.child.poll()
                if status == 0:
                    self.log.info("app closed by the operator (status 0); supervisor stops")
                    self.exits.append(0)
                    return 0
                if status is not None:
                    self.exits.append(status)
                    self.log.warning("app exited with status %s; restarting", status)
                    self._relaunch()
                elif self._next_daily is not None and self.local_now() >= self._next_daily:
                    self.daily_restarts += 1
                    self.log.info("daily restart (%s)", self.daily_at.strftime("%H:%M"))
                    self._end_child()
                    self.restarts += 1
                    self._launch()
                elif self._hung():
                    self.hangs += 1
                    self.log.warning(
                        "app produced no frame for %.0f s; killing and restarting", self.hang_after
                    )
                    self._end_child()
                    self._relaunch()
            self.log.info("supervisor stopping; ending the app")
            return 0
        finally:
            self._end_child()
            if self._own_heartbeat:
                self.heartbeat.unlink(missing_ok=True)

    # -- the child ------------------------------------------------------------------------------------

    def _launch(self) -> None:
        env = dict(self.env)
        env[HEARTBEAT_ENV] = str(self.heartbeat)
        env[RESTARTS_ENV] = str(self.restarts)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._launched = self.clock()
        if self.daily_at is not None:
            self._next_daily = next_daily(self.daily_at, self.local_now())
        self.child = subprocess.Popen(
            self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        self.log.info("started app pid %d: %s", self.child.pid, " ".join(self.command))
        threading.Thread(target=self._pump, args=(self.child,), daemon=True).start()

    def _pump(self, child: subprocess.Popen) -> None:
        """The child's output, line by line, into the rotating log."""
        for raw in iter(child.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.log.info("app[%d]: %s", child.pid, line)
        child.stdout.close()

    def _relaunch(self) -> None:
        lived = self.clock() - self._launched
        self._quick_failures = self._quick_failures + 1 if lived < QUICK_FAILURE_S else 0
        delay = min(self.restart_delay * 2 ** max(self._quick_failures - 1, 0), MAX_DELAY_S)
        if self._stop.wait(delay):
            return
        self.restarts += 1
        self._launch()

    def _hung(self) -> bool:
        try:
            beat = self.heartbeat.stat().st_mtime
        except OSError:
            beat = 0.0
        now = self.clock()
        if beat < self._launched:  # no frame yet from this child
            return now - self._launched > self.startup_grace
        return now - beat > self.hang_after

    def _end_child(self) -> None:
        child = self.child
        if child is None or child.poll() is not None:
            return
        child.terminate()
        try:
            child.wait(KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def supervise(command: Sequence[str], kiosk, logger: logging.Logger | None = None) -> int:
    """Run `command` under a Supervisor configured from a KioskConfig, stopping on SIGTERM / SIGINT."""
    logger = logger or make_logger(kiosk.log_dir or None, kiosk.log_max_bytes, kiosk.log_backups)
    sup = Supervisor(
        command,
        logger,
        hang_after=kiosk.hang_after,
        startup_grace=kiosk.startup_grace,
        daily_restart=kiosk.daily_restart,
    )

    def on_signal(signum, _frame):
        logger.info("signal %d", signum)
        sup.stop()

    for name in ("SIGTERM", "SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), on_signal)
    return sup.run()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scenes.kiosk.supervisor", description=__doc__.split("\n")[0])
    p.add_argument("--log-dir", help="folder for kiosk.log (default: the user's state folder)")
    p.add_argument("--hang-after", type=float, default=10.0, help="seconds without a heartbeat = hung")
    p.add_argument("--startup-grace", type=float, default=60.0, help="seconds to the first heartbeat")
    p.add_argument("--daily-restart", default="", metavar="HH:MM", help="restart the app daily at this time")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- the app's command line")
    opts = p.parse_args(argv)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        p.error("give the app's command after --")
    from convscope.scenes.kiosk.config import KioskConfig

    kiosk = KioskConfig(
        log_dir=opts.log_dir or "",
        hang_after=opts.hang_after,
        startup_grace=opts.startup_grace,
        daily_restart=opts.daily_restart,
    )
    return supervise(command, kiosk)


if __name__ == "__main__":
    sys.exit(main())
