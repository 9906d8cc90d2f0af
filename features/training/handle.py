"""TrainHandle: the render process's side of the training process (process.py), on ProcessHandle.

It owns the shared memory, sends commands and reads snapshots; spawn, restart and teardown are the base's.
Imports no torch.  Every call but `start` and the `wait_*` helpers returns at once; once per frame:

    handle.check()                 # restarts a dead or hung worker (counts restarts, sets .error)
    snap = handle.poll()           # newest snapshot (TrainSnapshot, copied out), or None
    if handle.spec_version != seen: ...rebuild the layout from handle.spec...
    handle.command("add_filter", layer=1)   # or pause(), set_hyper(lr=0.1), ...: an id; see replies[id]

A restarted worker starts from the architecture, hyperparameters and run/pause state last seen, with fresh
weights from the seed (the weights lived in the dead process).  The heartbeat (engine/proc/heartbeat.py)
tells a hung worker from a long step: `stale` and `activity()` say what the panel should show.
docs/PROTOCOLS.md has the messages, the segments and the heartbeat's phases.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from convscope.engine.graph.spec import NetSpec
from convscope.engine.proc.handle import READY, STOPPED, ProcessHandle
from convscope.engine.proc.heartbeat import Beat
from convscope.engine.proc.shm import Slot
from convscope.features.embedding import messages as V
from convscope.features.embedding.images_job import ImagesJob, ImagesJobs
from convscope.features.training import messages as T
from convscope.features.training.process import DEFAULTS, train_main

STARTING = "starting"  # process started, no architecture announced yet (importing torch, loading data)
ATTACHING = "attaching"  # a slot is named to the worker, waiting for ATTACHED
KEEP_FILTERS = 16  # FilterData kept in `filters` (nobody reads old ones)
# Heartbeat silence taken for a hang.  The worker beats through every legitimately long stretch (a step at
# batch 4096, a refit, a validation pass, waiting while paused), so only a stopped process or one stuck
# outside them (a checkpoint's open() on a FIFO) goes silent; generous for a swapping machine.
HANG_TIMEOUT_S = 12.0
STALE_S = 3.0  # a running worker whose heartbeat is this old: its numbers on screen are marked stale


class TrainHandle(ProcessHandle, ImagesJobs):
    """Runs one training worker for the render loop; see the module docstring for the frame loop."""

    _copy_thread_name = "train-images-copy"
    process_name = "convscope-train"
    what = "the training process"
    join_s = 2.0
    heartbeat = True

    def __init__(
        self,
        dataset: str = "cifar10",
        data_dir: str | os.PathLike | None = None,
        *,
        hyper: dict | None = None,  # features.training.trainer.Hyper fields (lr, momentum, ..., seed)
        widths: tuple[int, ...] = (16, 20, 20),  # conv filters per layer at start
        val_every: int = 500,  # steps between validation passes
        monitor_index: int = 0,  # held-out image shown at start
        publish_hz: float = 30.0,  # snapshots per second at most while training runs
        snapshot_budget: float = 0.02,  # ... and at most this share of the worker's time (process.py)
        start_paused: bool = False,
        download: bool = True,  # download a missing data set (CIFAR-10 / MNIST into data_dir)
        max_loss: float = 1e4,  # divergence guard (TrainerConfig.max_loss)
        data_mirror: str | None = None,  # base URL with the data files, instead of torchvision's URLs
        hang_timeout: float | None = HANG_TIMEOUT_S,  # heartbeat silence taken for a hang; None: never
        test_step_sleep: float = 0.0,  # tests only: seconds each step sleeps (a long but live step)
    ) -> None:
        self.options = {
            **DEFAULTS,
            "dataset": dataset,
            "data_dir": None if data_dir is None else os.fspath(data_dir),
            "download": bool(download),
            "hyper": dict(hyper or {}),
            "widths": tuple(int(w) for w in widths),
            "val_every": int(val_every),
            "monitor_index": int(monitor_index),
            "publish_hz": float(publish_hz),
            "snapshot_budget": float(snapshot_budget),
            "start_paused": bool(start_paused),
            "max_loss": float(max_loss),
            "data_mirror": data_mirror,
            "test_step_sleep": float(test_step_sleep),
        }
        super().__init__(hang_timeout=hang_timeout)
        self._state = STOPPED
        self._worker_version = 0  # version of the newest SPEC from the current process
        self._slot: Slot | None = None  # the attached snapshot slot
        self._filter_slot: Slot | None = None  # the attached filters slot (embed_filters)
        self._layout: T.SnapshotLayout | None = None
        # named to the worker, not attached: (version, snapshot slot, filters slot, spec, info)
        self._pending: tuple[int, Slot, Slot, NetSpec, dict] | None = None
        self._note: tuple[int, int] | None = None  # newest (version, seq) published and not read yet
        self._cmd = 0
        self.spec: NetSpec | None = None  # the architecture poll()'s snapshots describe
        self.spec_version = 0  # bumped whenever .spec changes (edit, reset, load, restart)
        self.info: dict = {}  # the SPEC's info: dataset, source, note, classes, hyper, reason, ...
        self.replies: dict[int, tuple[bool, str]] = {}  # command id -> (ok, text)
        self.notices: deque[str] = deque(maxlen=32)  # worker messages (NaN pause, ...) for the UI
        self.message = ""  # the newest of them
        self.messages_received = 0  # counts them, so a caller can tell a repeated text from a new one
        # (what, done bytes or None, total or None) while the worker loads its data, else None
        self.progress: tuple[str, int | None, int | None] | None = None
        self.progress_log: deque[tuple[str, int | None, int | None]] = deque(maxlen=64)  # newest last
        self.snapshots_read = 0
        self.last: T.TrainSnapshot | None = None  # newest snapshot handed out
        self.filters: dict[int, V.FilterData] = {}  # embed_filters command id -> its vectors
        self.images: ImagesJob | None = None  # the newest embed_images job
        self.images_meta: dict = {}  # what the worker said of the last finished one

    # -- properties ----------------------------------------------------------------------------------
    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> bool:
        """Start the worker and wait for its first snapshot: True, or False with .error set."""
        self.launch()
        try:
            self.wait_snapshot(timeout=timeout)
        except (TimeoutError, RuntimeError) as exc:
            self.error = self.error or str(exc)
            return False
        return True

    def close(self) -> None:
        """Stop the worker and free the shared memory.  Idempotent; also runs at interpreter exit."""
        super().close()
        self._drop_images("cancelled")

    def __enter__(self) -> TrainHandle:
        self.start()
        return self

    # -- commands ------------------------------------------------------------------------------------
    def command(self, name: str, **kwargs) -> int:
        """Send one command (messages.COMMANDS); returns its id at once.  See `replies`."""
        msg = T.command(self._cmd + 1, name, kwargs)  # ValueError for an unknown name, before any id
        self._cmd += 1
        if name == "set_hyper" and self.info.get("hyper") is not None:
            self.info["hyper"] = {**self.info["hyper"], **kwargs}  # kept for a restart
        if self._conn is None or not self._send(msg):
            self.replies[self._cmd] = (False, "the training process is not running")
        return self._cmd

    def pause(self) -> int:
        return self.command("pause")

    def resume(self) -> int:
        return self.command("resume")

    def step(self) -> int:
        """One training step, then paused."""
        return self.command("step")

    def reset(self, seed: int | None = None) -> int:
        return self.command("reset", seed=seed)

    def set_hyper(self, **changes) -> int:
        return self.command("set_hyper", **changes)

    def add_filter(self, layer: int, index: int | None = None) -> int:
        return self.command("add_filter", layer=layer, index=index)

    def remove_filter(self, layer: int, filter: int) -> int:  # noqa: A002 - the domain's word
        return self.command("remove_filter", layer=layer, filter=filter)

    def add_layer(self, position: int, width: int) -> int:
        return self.command("add_layer", position=position, width=width)

    def remove_layer(self, layer: int) -> int:
        return self.command("remove_layer", layer=layer)

    def save(self, path: str | os.PathLike) -> int:
        return self.command("save", path=os.fspath(path))

    def load(self, path: str | os.PathLike) -> int:
        return self.command("load", path=os.fspath(path))

    def set_monitor_index(self, index: int) -> int:
        return self.command("set_monitor_index", index=int(index))

    def embed_filters(self, layer: int) -> int:
        """Ask for conv layer `layer`'s four filter vector kinds; `filters[id]` once they are read."""
        return self.command("embed_filters", layer=int(layer))

    def embed_images(
        self, layer: str, count: int, include_train: bool = True, max_dim: int = V.MAX_IMAGE_DIM
    ) -> ImagesJob:
        """Start computing `layer`'s activations of min(count, available) images (held-out first, then
        training images if `include_train`); replaces a running job.  Follow it in `images`."""
        if self.spec is None:
            raise RuntimeError("the training process has not announced its network yet")
        n_val, n_train = int(self.info["n_val"]), int(self.info["n_train"])
        n = max(1, min(int(count), n_val + (n_train if include_train else 0)))
        d = V.image_dim(self.spec.layer(layer).shape, max_dim)  # KeyError for an unknown layer
        lay = V.ImagesLayout(n, d, tuple(self.spec.layers[0].shape))
        job = self._new_images_job(self._cmd + 1, layer, min(n, n_val), bool(include_train), lay)
        cmd = self.command("embed_images", **self._images_request(job, max_dim))
        assert cmd == job.cmd  # command() numbers them in order
        if cmd in self.replies and not self.replies[cmd][0]:
            self._fail_images(job, self.replies[cmd][1])
        return job

    def cancel_images(self) -> None:
        """Stop the running images job (the worker drops it; its segment is freed here)."""
        if self.images is not None and self.images.state in ("starting", "computing"):
            self.command("cancel_images")
        self._drop_images("cancelled")

    # -- per frame -----------------------------------------------------------------------------------
    def poll(self) -> T.TrainSnapshot | None:
        """The newest snapshot published since the last poll (a copy), or None.  Never blocks."""
        self._finish_images()
        if self._conn is None:
            return None
        self._drain()
        if self._note is None or self._slot is None or self._state != READY:
            return None
        version, _ = self._note
        if version != self._worker_version:
            self._note = None
            return None
        buf = np.empty(self._layout.count, np.float32)
        got = self._slot.read_into(buf)
        if got is None:
            return None  # the worker kept rewriting it during the copy; next frame
        self._note = None
        seq = got[0]
        if seq == 0:
            return None
        self._send(T.Read(seq))  # flow control: the worker may write the next one
        snap = T.unpack(self._layout, buf, seq, self.spec_version)
        self.last = snap
        self.snapshots_read += 1
        self._ready_now()
        if self.error and self.error.startswith(self.what):  # the restart's message: it is back now
            self.error = None
        return snap

    # -- blocking helpers for tools and tests ---------------------------------------------------------
    def wait_reply(self, cmd_id: int, timeout: float = 30.0) -> tuple[bool, str]:
        """Block until command `cmd_id` is answered; (ok, text)."""
        deadline = time.monotonic() + timeout
        while cmd_id not in self.replies:
            self._wait_once(deadline, f"no answer to command {cmd_id}")
        return self.replies[cmd_id]

    def wait_snapshot(
        self, pred: Callable[[T.TrainSnapshot], bool] | None = None, timeout: float = 30.0
    ) -> T.TrainSnapshot:
        """Block until a snapshot arrives for which `pred` holds (default: any)."""
        deadline = time.monotonic() + timeout
        while True:
            snap = self.poll()
            if snap is not None and (pred is None or pred(snap)):
                return snap
            self._wait_once(deadline, "no matching snapshot")

    def wait_filters(self, cmd_id: int, timeout: float = 30.0) -> V.FilterData:
        """Block until the vectors of embed_filters command `cmd_id` are here (RuntimeError if refused)."""
        deadline = time.monotonic() + timeout
        while cmd_id not in self.filters:
            ok, text = self.replies.get(cmd_id, (True, ""))
            if not ok:
                raise RuntimeError(f"embed_filters refused: {text}")
            self._wait_once(deadline, f"no filter vectors for command {cmd_id}")
        return self.filters[cmd_id]

    def _wait_once(self, deadline: float, what: str) -> None:
        if self._conn is None or not self.alive:
            self._drain()
            raise RuntimeError(f"{what}: {self.error or 'the training process is not running'}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"{what} within the timeout (state {self._state}, error {self.error})")
        self._wait(min(left, 0.05))

    # -- internals -----------------------------------------------------------------------------------
    def _target(self):
        return train_main, (dict(self.options),), {}

    def _quit_message(self):
        return T.Quit()

    def _spawned(self) -> None:
        self._state = STARTING
        self._worker_version = 0
        self.progress = None

    def _describe(self, beat: Beat) -> str:
        where = T.describe_phase(beat.phase, beat.a, beat.b)
        # A covered phase has a thread beating through it: silence there means the whole process stopped.
        return where if beat.phase in (T.PHASE_SAVE, T.PHASE_LOAD) else f"stopped {where}"

    def _prepare_restart(self) -> str:
        """The new worker starts from the architecture, hyperparameters and run/pause state last seen,
        with fresh weights from the seed: the weights (and the guard's copies) lived in the old process."""
        reason = self.error if self.error and self._state != READY else None
        if self.spec is not None:
            self.options["widths"] = tuple(layer.shape[0] for layer in V.conv_layers(self.spec))
        if self.info.get("hyper"):
            self.options["hyper"] = dict(self.info["hyper"])
        if self.last is not None:
            self.options["start_paused"] = self.last.paused
            self.options["monitor_index"] = int(self.last.stats["monitor_index"])
        return (
            " from a fresh start (the seed)"
            + (f" ({reason})" if reason else "")
            + "; load a checkpoint to continue from saved weights"
        )

    @property
    def _stale_s(self) -> float:
        return STALE_S if self._hang_timeout is None else min(STALE_S, 0.5 * self._hang_timeout)

    def activity(self) -> str | None:
        """What a live worker is busy with when it has been at it for a while (a long step, a refit),
        e.g. "in step 1234, batch 4096 for 4 s"; None when it beats from its loop as usual."""
        beat = self.beat()
        if beat is None or beat.count == 0 or beat.phase_s + beat.silent_s < self._stale_s:
            return None
        if beat.phase in (T.PHASE_LOOP, T.PHASE_WAIT):
            return None
        return f"{T.describe_phase(beat.phase, beat.a, beat.b)} for {beat.phase_s + beat.silent_s:.0f} s"

    @property
    def stale(self) -> bool:
        """True while the worker has said nothing for STALE_S seconds (half the hang timeout if that is
        less), or has been in one long step or command that long: numbers from its last snapshot (the
        images/s) are out of date."""
        beat = self.beat()
        if beat is None or beat.count == 0:
            return False
        return beat.silent_s >= self._stale_s or self.activity() is not None

    def _handle(self, msg) -> None:
        kind = type(msg)
        if kind is T.Snap:
            self._note = (msg.version, msg.seq)
        elif kind is T.Spec:
            self._on_spec(msg.version, NetSpec.from_dict(msg.spec), msg.info)
        elif kind is T.Attached:
            self._on_attached(msg.version)
        elif kind is T.Reply:
            self._on_reply(msg)
        elif kind is T.Message:
            self.message = msg.text
            self.notices.append(msg.text)
            self.messages_received += 1
        elif kind is T.Error:
            self.error = msg.text
            self.progress = None
        elif kind is T.Progress:
            self.progress = (msg.what, msg.done, msg.total)
            self.progress_log.append(self.progress)
        elif kind is T.Filters:
            self._on_filters(msg.cmd_id, msg.version, msg.meta)
        elif kind in V.IMAGE_MESSAGES:
            self._on_image_msg(msg)

    def _on_reply(self, msg: T.Reply) -> None:
        self.replies[msg.cmd_id] = (msg.ok, msg.text)
        if len(self.replies) > 4096:  # nobody reads old answers; keep the table bounded
            del self.replies[next(iter(self.replies))]
        job = self.images
        if not msg.ok and job is not None and job.cmd == msg.cmd_id and job.active:
            self._fail_images(job, msg.text)  # the embed_images command itself was refused

    def _on_filters(self, cmd_id: int, version: int, meta: dict) -> None:
        if version != self._worker_version or self._filter_slot is None or self._state != READY:
            return  # written into a slot of an architecture since replaced
        lay = V.FilterLayout.of(self.spec, int(meta["layer_index"]))
        buf = np.empty(self._filter_slot.count, np.float32)
        got = self._filter_slot.read_into(buf)
        if got is None or got[0] != cmd_id:
            return  # a newer embed_filters already overwrote it; its own FILTERS follows
        self.filters[cmd_id] = V.unpack_filters(lay, buf, cmd_id, self.spec_version, meta)
        while len(self.filters) > KEEP_FILTERS:
            del self.filters[next(iter(self.filters))]

    def _on_spec(self, version: int, spec: NetSpec, info: dict) -> None:
        self._worker_version = version
        self._release_pending()
        self._release_slot()  # the worker let go of it before announcing
        self._note = None
        slots: list[Slot] = []
        try:
            layout = T.SnapshotLayout(spec)
            slots.append(Slot.create(layout.count))
            slots.append(Slot.create(V.filter_slot_count(spec)))
        except (OSError, ValueError) as exc:
            for slot in slots:
                slot.unlink()
                slot.close()
            self.error = f"could not create shared memory for the training snapshot: {exc}"
            return
        self._pending = (version, slots[0], slots[1], spec, info)
        self._state = ATTACHING
        self._send(T.Attach(version, slots[0].name, slots[1].name))

    def _on_attached(self, version: int) -> None:
        if self._pending is None or self._pending[0] != version:
            return
        _, slot, filter_slot, spec, info = self._pending
        self._pending = None
        slot.unlink()  # both sides have them mapped now; nothing can leak from here on
        filter_slot.unlink()
        self._slot = slot
        self._filter_slot = filter_slot
        self._layout = T.SnapshotLayout(spec)
        self.spec = spec
        self.info = info
        self.spec_version += 1
        self._state = READY
        self.progress = None  # the data is loaded
        if self.error and not self.error.startswith(self.what):  # a restart's message stays up
            self.error = None

    def _release_pending(self) -> None:
        if self._pending is not None:
            for slot in self._pending[1:3]:
                slot.unlink()
                slot.close()
            self._pending = None

    def _release_slot(self) -> None:
        for slot in (self._slot, self._filter_slot):
            if slot is not None:
                slot.unlink()  # no-op once unlinked after ATTACHED
                slot.close()
        self._slot = self._filter_slot = None

    def _release(self) -> None:
        self._release_pending()
        self._release_slot()
        job = self.images
        if job is not None and job.state in ("starting", "computing"):
            self._fail_images(job, "the training process stopped")
        self._state = STOPPED
        self._note = None
        self.progress = None
