"""The training process: runs a Trainer (trainer.py) and publishes what the scene draws.

Started by TrainHandle with the "spawn" context; nothing at module level imports torch (the render process
imports this module to name the spawn target).  Start: the data set (features/data; a download with
Progress messages), the Trainer, then the first Spec.  Loop: every waiting command (each answered with a
Reply), one training step unless paused, an images-job batch if one runs, and a snapshot when one is due
(flow control and layout: messages.py, docs/PROTOCOLS.md).  While paused it blocks on the pipe.  It beats
the heartbeat from the loop, and a pulse thread beats through steps, commands and waits, never through
checkpoint file I/O.  On EOF (render process gone) it exits.

Length: one loop with the handler of every training command, the snapshot writer and the
heartbeat phases, all sharing the worker's state; the training itself is trainer.py's.
"""

from __future__ import annotations

import math
import os
import select
import signal
import sys
import time
from collections import deque
from multiprocessing.connection import Connection

import numpy as np
from convscope.engine.proc.heartbeat import NoPulse, Pulse
from convscope.engine.proc.shm import Slot
from convscope.features.embedding import messages as V
from convscope.features.embedding.images_writer import ImagesWriter
from convscope.features.training import messages as T
from convscope.features.training.allocator import tune_for_training

DEFAULTS = {
    "dataset": "cifar10",  # "cifar10", "mnist" or "digits"; falls back to the built-in digits with a note
    "data_dir": None,  # where make_dataset looks (and downloads to)
    "download": True,  # download a missing set (features/data/download.py; fails fast when offline)
    "data_mirror": None,  # base URL holding the data files under torchvision's names, instead of theirs
    "hyper": {},  # features.training.trainer.Hyper fields
    "widths": (16, 20, 20),  # conv filters per layer at start (the paper's 16-20-20)
    "val_every": 500,  # steps between validation passes
    "monitor_index": 0,  # held-out image whose activations are shown
    # Snapshots per second at most while training runs.  The jitter is animated on the render side every
    # frame; activations, paths and charts need no more than 30 updates a second.
    "publish_hz": 30.0,
    # ... and at most this share of the worker's time: a snapshot costs the monitored image's forward pass
    # (~0.9 ms on one core here, so ~22 a second at 0.02; a GPU-less laptop's faster core gets the 30).
    "snapshot_budget": 0.02,
    "start_paused": False,
    "max_loss": 1e4,  # divergence guard threshold (TrainerConfig.max_loss)
}
HEARTBEAT_S = 0.5  # publish even without a READ after this long (flow control: docs/PROTOCOLS.md)
IMAGE_BATCH = 128  # images per ImageVectors step: ~20 ms of forward pass on one core between training steps


def train_main(conn: Connection, options: dict, pulse: str | None = None) -> None:
    """Entry point of the training process; returns when told to quit or when the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the render process decides when we stop
    # Each step's tensors reuse heap memory instead of fresh pages (features/training/allocator.py: ~20 % at
    # batch 128 on a young process); set before torch allocates anything.
    tune_for_training()
    import torch

    # One core for the net: the machine is shared with the render loop (and llvmpipe), and threads
    # cost more in wake-ups than they save on nets this small.
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    # The heartbeat (engine/proc/heartbeat.py): beats from the loop, and from a thread through the long
    # stretches that are no hang (a step, a refit, waiting while paused, loading the data).
    beat = Pulse(pulse) if pulse else NoPulse()
    worker = None
    try:
        # Loading may be a long download: a SIGTERM (the render side's close) then unwinds through the
        # downloader, which deletes its partial file, instead of killing the process on the spot.
        default_term = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            with beat.during(T.PHASE_LOADING):
                worker = _TrainWorker(conn, {**DEFAULTS, **options}, beat)
        finally:
            signal.signal(signal.SIGTERM, default_term)
        worker.serve()
    except Exception as exc:  # a crash is reported as one line, not a traceback in the user's terminal
        try:
            conn.send(T.Error(f"training process failed: {type(exc).__name__}: {exc}"))
        except OSError:
            pass
    finally:
        if worker is not None:
            worker.release()
        beat.close()
        conn.close()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # skip torch's slow interpreter teardown; everything is released above


def _int_or_none(v) -> int | None:
    return None if v is None else int(v)


def _exit_on_sigterm(signum: int, frame) -> None:
    raise SystemExit(128 + signum)


def _parent_gone() -> bool:
    """True once the render process has died: a download for nobody stops (checked between chunks)."""
    import multiprocessing

    parent = multiprocessing.parent_process()
    return parent is not None and not parent.is_alive()


class _ProgressSender:
    """make_dataset's progress callback: PROGRESS messages at most PROGRESS_HZ a second; a new stage and
    a finished download always go out (the render side keeps only the newest)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.period = 1.0 / T.PROGRESS_HZ
        self.last = -math.inf
        self.what = ""
        self.sent = 0

    def __call__(self, what: str, done: int | None, total: int | None) -> None:
        now = time.monotonic()
        finished = done is not None and done == total
        if what == self.what and not finished and now - self.last < self.period:
            return
        self.what, self.last = what, now
        try:
            self.conn.send(T.Progress(str(what), _int_or_none(done), _int_or_none(total)))
            self.sent += 1
        except OSError:
            pass  # render side gone: _parent_gone stops the download


class _TrainWorker:
    def __init__(self, conn: Connection, opts: dict, beat: Pulse | NoPulse | None = None) -> None:
        from convscope.features.data.datasets import make_dataset
        from convscope.features.training.trainer import Hyper, Trainer, TrainerConfig

        self.conn = conn
        self.opts = opts
        self.beat = beat if beat is not None else NoPulse()
        self.step_sleep = float(opts.get("test_step_sleep", 0.0))  # a test's stand-in for a long step
        self.t0 = time.perf_counter()
        data = make_dataset(
            opts["dataset"],
            opts["data_dir"],
            download=opts["download"],
            progress=_ProgressSender(conn),
            mirror=opts["data_mirror"],
            cancel=_parent_gone,
        )
        config = TrainerConfig(
            widths=tuple(opts["widths"]),
            val_every=int(opts["val_every"]),
            monitor_index=int(opts["monitor_index"]) % len(data.x_val),
            max_loss=float(opts["max_loss"]),
        )
        self.trainer = Trainer(data, Hyper(**opts["hyper"]), config)
        self.trainer.paused = bool(opts["start_paused"])
        self.period = 1.0 / max(float(opts["publish_hz"]), 1e-3)
        self.budget = min(max(float(opts["snapshot_budget"]), 1e-4), 1.0)
        self.publish_costs: deque[float] = deque(maxlen=9)  # seconds of the latest publish() calls
        self.publish_seconds = 0.0  # all of them since start
        self.publish_period = self.period  # spacing the budget allows at their median cost
        self.version = 0
        self.layout: T.SnapshotLayout | None = None
        self.slot: Slot | None = None
        self.seq = 0
        self.last_publish = -math.inf
        self.dirty = False  # something the user should see changed: publish now, even while paused
        self.unread = 0  # snapshots written since the render side last said it read one
        self.quit = False
        self.max_rate: float | None = None  # set_speed: training steps a second at most; None: full speed
        self.next_step_at = 0.0  # perf_counter time the next throttled step is due
        self.last_cmd = 0
        self.images_total = 0.0
        self.message_sent = ""
        self.stats: dict = {}
        self.history = np.zeros((T.HISTORY, T.HISTORY_COLS), np.float32)  # ring of per-step rows
        self.history_n = 0  # rows ever written (ring position = history_n % HISTORY)
        self.filter_slot: Slot | None = None  # the architecture's filters slot (embed_filters)
        self.deferred: list[tuple[int, str, dict]] = []  # embed_filters waiting for the filters slot
        self.images: _ImagesJob | None = None  # the running embed_images job
        self.filter_ids: list[list[int]] = []  # per conv layer, the stable id of each filter in index order
        self.next_filter_id: list[int] = []  # per conv layer, the next id never used there
        self.fresh_filter_ids()
        # Is a message waiting?  Asked once per training step: Connection.poll() builds a selector each
        # call (~20 us, most of a 4-image step's loop overhead); a poll object made once answers in ~2 us.
        self._poller = None
        if hasattr(select, "poll"):  # not on Windows: conn.poll() there
            self._poller = select.poll()
            self._poller.register(conn.fileno(), select.POLLIN)

    def waiting(self) -> bool:
        """True when a message (or EOF) can be read from the pipe without blocking."""
        if self._poller is not None:
            return bool(self._poller.poll(0))
        return self.conn.poll()

    # -- loop -----------------------------------------------------------------------------------------
    def serve(self) -> None:
        self.announce("start")
        beat, tr = self.beat, self.trainer
        while not self.quit:
            beat.beat(T.PHASE_LOOP, tr.step_count)
            publishable = self.dirty and self.slot is not None
            idle = not publishable and self.images is None
            wait = self.throttle_wait()
            if wait > 0 and idle:
                self.conn.poll(wait)  # slowed down: sleep until the next step is due or a message comes
            if not self.receive(block=tr.paused and idle):
                return
            if self.quit:
                return
            if not tr.paused and self.throttle_wait() <= 0:
                # A step at batch 4096, or one that validates, takes seconds: no hang while it runs.
                with beat.during(T.PHASE_STEP, tr.step_count, (tr.pending or tr.hyper).batch_size):
                    if self.step_sleep:
                        time.sleep(self.step_sleep)
                    stats = tr.tick()
                if stats is not None:
                    self.record(stats)
                if self.max_rate is not None:
                    period = 1.0 / self.max_rate
                    self.next_step_at = max(self.next_step_at, time.perf_counter() - period) + period
            if self.images is not None:
                with beat.during(T.PHASE_IMAGES, tr.step_count):
                    self.step_images()
            now = time.perf_counter()
            due = not self.trainer.paused and now - self.last_publish >= self.publish_period
            # Flow control (docs/PROTOCOLS.md): the next one only once the last one was read, except for
            # a slow heartbeat, so a render side that lost a READ cannot stall the pictures for good.
            wanted = self.unread == 0 or now - self.last_publish >= HEARTBEAT_S
            if self.slot is not None and (self.dirty or (due and wanted)):
                with beat.during(T.PHASE_PUBLISH, tr.step_count):
                    self.publish()
                spent = time.perf_counter() - now
                self.publish_costs.append(spent)
                self.publish_seconds += spent
                # The median cost: the first publishes (cold caches, oneDNN set-up) cost several times more.
                cost = sorted(self.publish_costs)[len(self.publish_costs) // 2]
                self.publish_period = max(self.period, cost / self.budget)
                self.last_publish = now

    def throttle_wait(self) -> float:
        """Seconds until the next step may run under set_speed (0 at full speed or when it is due)."""
        if self.max_rate is None or self.trainer.paused:
            return 0.0
        return max(self.next_step_at - time.perf_counter(), 0.0)

    def receive(self, block: bool) -> bool:
        """Handle every waiting message (after waiting for one when `block`); False when the pipe closed."""
        try:
            msgs = []
            if block:  # paused: waiting for the user is no hang
                with self.beat.during(T.PHASE_WAIT, self.trainer.step_count):
                    msgs.append(self.conn.recv())
            while self.waiting():
                msgs.append(self.conn.recv())
        except (EOFError, OSError):
            return False
        for msg in msgs:
            kind = type(msg)
            if kind is T.Quit:
                self.quit = True
                return True
            if kind is T.Read:
                self.unread = 0
            elif kind is T.Attach:
                self.attach(msg.version, msg.name, msg.filters_name)
            elif kind is T.Cmd:
                self.command(msg.cmd_id, msg.name, msg.kwargs)
        return True

    def send(self, msg: tuple) -> None:
        try:
            self.conn.send(msg)
        except OSError:
            pass  # render side gone; the next recv() sees EOF and we exit

    # -- architecture announcements -------------------------------------------------------------------
    def announce(self, reason: str) -> None:
        """Send the current NetSpec; publishing waits for the render side's slot of the new size."""
        tr = self.trainer
        self.close_slot()
        self.version += 1
        spec = tr.spec
        self.layout = T.SnapshotLayout(spec)
        d = tr.data
        info = {
            "reason": reason,
            "dataset": d.name,
            "source": d.source,
            "note": d.note,
            "classes": list(d.classes),
            "n_train": len(d.x_train),
            "n_val": len(d.x_val),
            "widths": list(tr.model.widths),
            "hyper": (tr.pending or tr.hyper).to_dict(),
            "paused": tr.paused,
            "message": tr.message,
        }
        self.send(T.Spec(self.version, spec.to_dict(), info))

    def attach(self, version: int, name: str, filters_name: str) -> None:
        if version != self.version or self.layout is None:
            return  # for a spec that a newer one replaced; the render side drops that segment itself
        self.close_slot()
        try:
            self.slot = Slot.attach(name, self.layout.count)
            self.filter_slot = Slot.attach(filters_name, V.filter_slot_count(self.trainer.spec))
        except (OSError, ValueError) as exc:
            self.send(T.Error(f"could not attach the snapshot segments: {exc}"))
            self.quit = True
            return
        self.send(T.Attached(version))
        self.dirty = True
        self.unread = 0
        waiting, self.deferred = self.deferred, []
        for cmd in waiting:
            self.command(*cmd)

    def close_slot(self) -> None:
        for slot in (self.slot, self.filter_slot):
            if slot is not None:
                slot.close()
        self.slot = self.filter_slot = None

    # -- commands -------------------------------------------------------------------------------------
    def command(self, cmd_id: int, name: str, kwargs: dict) -> None:
        step = self.trainer.step_count
        if name in ("save", "load"):
            # File I/O: one beat before it and none during, so an open() that never returns (a FIFO for a
            # checkpoint) goes silent and the render side reports it.
            self.beat.beat(T.PHASE_SAVE if name == "save" else T.PHASE_LOAD, step, force=True)
            self._command(cmd_id, name, kwargs)
            return
        # Surgery refits, a validation pass: seconds, and no hang.
        with self.beat.during(T.PHASE_COMMAND, step, T.COMMANDS.index(name) if name in T.COMMANDS else -1):
            self._command(cmd_id, name, kwargs)

    def _command(self, cmd_id: int, name: str, kwargs: dict) -> None:
        from convscope.models.checkpoint import CheckpointError
        from convscope.models.surgery import SurgeryError

        tr = self.trainer
        self.last_cmd = cmd_id
        reason = None  # set when the architecture (or the whole run) changed
        try:
            if name == "pause":
                stats = tr.pause()  # a stats dict when the weights it scans turned out bad (restored)
                if stats is not None:
                    self.record(stats)
                text = tr.message or "paused"
            elif name == "resume":
                tr.resume()
                text = "running"
            elif name == "step":
                self.record(tr.single_step())
                text = tr.message or f"step {tr.step_count}"
            elif name == "reset":
                tr.reset(kwargs.get("seed"))
                self.history_n = 0
                self.history[:] = 0
                self.fresh_filter_ids()
                reason, text = "reset", f"reset to fresh weights from seed {tr.run_seed}"
            elif name == "set_hyper":
                pending = tr.set_hyper(**kwargs)
                text = "next step uses " + ", ".join(f"{k}={getattr(pending, k)}" for k in sorted(kwargs))
            elif name == "add_filter":
                k = int(kwargs["layer"])
                i = tr.add_filter(k, kwargs.get("index"))
                self.filter_ids[k].insert(i, self.next_filter_id[k])
                self.next_filter_id[k] += 1
                reason, text = "edit", f"added filter {i} to conv{k + 1}"
            elif name == "remove_filter":
                k, i = int(kwargs["layer"]), int(kwargs["filter"])
                tr.remove_filter(k, i)
                del self.filter_ids[k][i]
                reason, text = "edit", tr.message
            elif name == "add_layer":
                width = int(kwargs["width"])
                p = tr.add_layer(int(kwargs["position"]), width)
                self.filter_ids.insert(p, list(range(width)))
                self.next_filter_id.insert(p, width)
                reason, text = "edit", f"added conv layer {p + 1} with {width} filters"
            elif name == "remove_layer":
                k = int(kwargs["layer"])
                tr.remove_layer(k)
                del self.filter_ids[k]
                del self.next_filter_id[k]
                reason, text = "edit", tr.message
            elif name == "save":
                path = tr.save(kwargs["path"])
                text = f"saved checkpoint {path} at step {tr.step_count}"
            elif name == "load":
                tr.load(kwargs["path"])
                self.history_n = 0
                self.history[:] = 0
                self.fresh_filter_ids()
                reason, text = "load", tr.message
            elif name == "set_monitor_index":
                tr.monitor_index = int(kwargs["index"]) % len(tr.data.x_val)
                text = f"monitoring held-out image {tr.monitor_index}"
            elif name == "set_speed":
                rate = kwargs.get("steps_per_s")
                self.max_rate = float(rate) if rate else None
                if self.max_rate is not None and not (0.01 <= self.max_rate <= 1e6):
                    self.max_rate = None
                    raise ValueError(f"steps_per_s must be 0.01 to 1e6 (or 0: full speed), got {rate}")
                self.next_step_at = time.perf_counter()
                text = "full speed" if self.max_rate is None else f"at most {self.max_rate:g} steps a second"
            elif name == "validate":
                text = f"validation accuracy {tr.validate():.3f}"
            elif name == "embed_filters":
                if self.filter_slot is None:  # between a SPEC and its ATTACH: run once the slot is there
                    self.deferred.append((cmd_id, name, kwargs))
                    return
                text = self.embed_filters(cmd_id, int(kwargs["layer"]))
            elif name == "embed_images":
                text = self.start_images(cmd_id, kwargs)
            elif name == "cancel_images":
                text = "cancelled the images job" if self.images is not None else "no images job running"
                self.drop_images()
            else:
                raise ValueError(f"unknown command {name!r}")
        except (SurgeryError, CheckpointError, ValueError, KeyError, TypeError, OSError) as exc:
            # A refused edit, a bad value or a bad file: nothing changed (Trainer and surgery check
            # first), so the session runs on; the user reads why.
            text = str(exc) if not isinstance(exc, KeyError) else f"missing argument {exc}"
            self.send(T.Reply(cmd_id, False, str(text)))
            self.dirty = True
            return
        if reason is not None:
            self.announce(reason)
        self.send(T.Reply(cmd_id, True, str(text)))
        self.dirty = True

    # -- per step -------------------------------------------------------------------------------------
    def record(self, stats: dict) -> None:
        self.stats = stats
        if stats.get("ok", False):
            self.images_total += stats["batch_size"]
            row = self.history[self.history_n % T.HISTORY]
            row[0], row[1], row[2] = stats["step"], stats["loss"], stats["acc"]
            self.history_n += 1
        message = self.trainer.message
        if message != self.message_sent:
            self.message_sent = message
            if message and not stats.get("ok", True):
                self.send(T.Message(str(message)))
                self.dirty = True

    def publish(self) -> None:
        """One snapshot into the slot (a seqlock write: the render side never sees half of one).

        Costs ~1 ms on one core here, half of it the single-image forward pass, taken from training each
        time.  Kept down: the activations, their per-map sums and the jitter go into the shared payload
        with one torch.cat each (torch views of it); the net is not switched to eval mode and back (it has
        no dropout or batch norm, and the round trip costs ~90 us); and oneDNN is off for the forward pass,
        whose convolutions on a single image it runs ~30 % slower than torch's own (the batches of a
        training step are its strength)."""
        import torch
        from convscope.features.data.datasets import to_input

        tr, lay = self.trainer, self.layout
        n_val = len(tr.data.x_val)
        index = tr.monitor_index % n_val
        group = tr.optimizer.param_groups[0]
        rows = min(self.history_n, T.HISTORY)
        s = self.stats
        nan = float("nan")
        values = {
            "step": tr.step_count,
            "epoch": tr.epoch + tr.offset / len(tr.data.x_train),
            "loss": s.get("loss", nan),
            "loss_smooth": s.get("loss_smooth", nan),
            "acc": s.get("acc", nan),
            "acc_smooth": s.get("acc_smooth", nan),
            "val_acc": nan if tr.val_acc is None else tr.val_acc,
            "val_step": nan if tr.val_step is None else tr.val_step,
            "images_per_s": s.get("images_per_s", nan),
            "images_total": self.images_total,
            "clock": time.perf_counter() - self.t0,
            "paused": float(tr.paused),
            "ok": float(s.get("ok", True)),
            "batch_size": min(tr.hyper.batch_size, len(tr.data.x_train)),
            "opt_lr": group["lr"],
            "opt_momentum": group.get("momentum", 0.0),
            "opt_weight_decay": group.get("weight_decay", 0.0),
            "optimizer": _optimizer_index(tr.optimizer, torch),
            "monitor_index": index,
            "monitor_label": int(tr.data.y_val[index]),
            "n_val": n_val,
            "cmd": self.last_cmd,
            "history_rows": rows,
            "publishes": self.seq + 1,
            "publish_seconds": self.publish_seconds,
            "val_loss": nan if tr.val_loss is None else tr.val_loss,
            "hyper_lr": tr.hyper.lr,
            "clip_norm": tr.clip_norm,
            "warm_left": tr.warm_left,
        }
        model = tr.model
        mkldnn = torch.backends.mkldnn
        was = mkldnn.enabled
        with torch.no_grad():
            mkldnn.enabled = False
            try:
                acts = model.forward_all(to_input(tr.data.x_val[index : index + 1], tr.device))
            finally:
                mkldnn.enabled = was
            sums = [acts[g.name][0].reshape(g.shape[0], -1).sum(1) for g in T.grid_layers(lay.spec)]
            jitter = [
                j if j is not None else torch.zeros(w)
                for j, w in zip(tr.jitter_means(), model.widths, strict=True)
            ]
            self.seq += 1
            with self.slot.writing(self.seq) as out:
                view = torch.from_numpy(out)
                out[lay.stats] = [values[k] for k in T.STATS]
                if rows:
                    start = self.history_n - rows  # oldest row still in the ring, written first
                    order = (np.arange(start, self.history_n) % T.HISTORY).astype(np.intp)
                    out[lay.history][: rows * T.HISTORY_COLS] = self.history[order].reshape(-1)
                # Layers are stored in spec order with contiguous node ids: one cat fills the block.
                torch.cat([acts[layer.name].reshape(-1) for layer in lay.spec.layers], out=view[lay.acts])
                torch.cat(sums, out=view[lay.sums])
                torch.cat(jitter, out=view[lay.jitter])
                view[lay.filters].copy_(model.convs[0].weight.detach().reshape(-1))
                # Each filter's kernel summed per input channel: the weight of a path in the scene.
                pairs = [c.weight.detach().sum(dim=(2, 3)).reshape(-1) for c in model.convs]
                view[lay.pairs].copy_(torch.cat(pairs))
                del view
            del out
        self.send(T.Snap(self.version, self.seq))
        self.dirty = False
        self.unread += 1

    # -- embedding view ---------------------------------------------------------------------------------
    def fresh_filter_ids(self) -> None:
        """Ids 0..w-1 per conv layer: a new run (start, reset, load) has no history to follow."""
        widths = self.trainer.model.widths
        self.filter_ids = [list(range(w)) for w in widths]
        self.next_filter_id = list(widths)

    def embed_filters(self, cmd_id: int, layer: int) -> str:
        """The four vector kinds of conv layer `layer` for the monitored image, into the filters slot."""
        from convscope.features.embedding.vectors import filter_vectors

        tr = self.trainer
        t0 = time.perf_counter()
        lay = V.FilterLayout.of(tr.spec, layer)  # ValueError for a layer that is not there
        index = tr.monitor_index % len(tr.data.x_val)
        label = int(tr.data.y_val[index])
        tr.model.eval()  # as publish() does (no dropout / batch norm: it changes nothing)
        fv = filter_vectors(tr.model, layer, tr.data.x_val[index], label)
        with self.filter_slot.writing(cmd_id) as out:
            out[lay.ids] = self.filter_ids[layer]
            for kind in V.KINDS:
                out[lay.block(kind)] = fv[kind].reshape(-1)
        del out
        meta = {
            "layer": lay.layer,
            "layer_index": layer,
            "label": label,
            "loss": fv.loss,
            "step": tr.step_count,
            "monitor_index": index,
            "seconds": time.perf_counter() - t0,
        }
        self.send(T.Filters(cmd_id, self.version, meta))
        return f"filter vectors of {lay.layer} ({lay.count} filters)"

    def start_images(self, cmd_id: int, kw: dict) -> str:
        """Attach the job's segment and set up an ImageVectors; step_images does the work."""
        import torch
        from convscope.features.embedding.vectors import ImageVectors

        tr, data = self.trainer, self.trainer.data
        layer, n, d = str(kw["layer"]), int(kw["n"]), int(kw["d"])
        include_train = bool(kw["include_train"])
        names = [x.name for x in tr.spec.layers]
        if layer not in names:
            raise ValueError(f"no layer {layer!r}; the network has {names}")
        n_val = len(data.x_val)
        total = n_val + (len(data.x_train) if include_train else 0)
        if not 0 < n <= total:
            raise ValueError(f"{n} images asked for, {total} available")
        expected = V.image_dim(tr.spec.layer(layer).shape, int(kw["max_dim"]))
        if d != expected:
            raise ValueError(f"{layer}: vectors have {expected} values, not {d}")
        self.drop_images()
        x, y = data.x_val[:n], data.y_val[:n]
        if n > n_val:
            x = torch.cat([x, data.x_train[: n - n_val]])
            y = torch.cat([y, data.y_train[: n - n_val]])
        lay = V.ImagesLayout(n, d, tuple(int(s) for s in x.shape[1:]))
        iv = ImageVectors(tr.model, x, layer, batch_size=IMAGE_BATCH, max_dim=int(kw["max_dim"]))
        writer = ImagesWriter(cmd_id, kw, lay)  # OSError / ValueError: refused, nothing runs
        self.send(V.ImgAttached(cmd_id))
        self.images = _ImagesJob(cmd_id, writer, lay, iv, tr.step_count, time.perf_counter())
        self.images.labels, self.images.pixels = y.numpy(), x.numpy()
        return f"computing {layer} activations of {n} images"

    def step_images(self) -> None:
        """One batch of the images job, written into its segment; finishes the job after the last one."""
        job = self.images
        try:
            start = job.iv.done
            job.iv.step()
            stop = job.iv.done
            rows = job.iv.out[start:stop]
            if rows.shape[1] != job.layout.d:
                raise ValueError(f"vectors of {rows.shape[1]} values, the segment holds {job.layout.d}")
            # Labels and pixels go in with their rows: a fresh segment's first touch costs too.
            job.writer.write(start, stop, rows, job.labels[start:stop], job.pixels[start:stop])
        except Exception as exc:  # a failed job must not take training down; the render side is told
            self.send(V.ImgFailed(job.cmd, f"{type(exc).__name__}: {exc}"))
            self.drop_images()
            return
        self.send(V.ImgProgress(job.cmd, float(job.iv.fraction)))
        if job.iv.finished:
            job.writer.finish()
            meta = {"step": job.step, "seconds": time.perf_counter() - job.t0, "n": job.layout.n}
            self.send(V.ImgDone(job.cmd, meta))
            self.drop_images()

    def drop_images(self) -> None:
        if self.images is not None:
            self.images.writer.close()
            self.images = None

    def release(self) -> None:
        self.close_slot()
        self.drop_images()


class _ImagesJob:
    """The running embed_images job: its segment, its layout and the ImageVectors stepping through it."""

    def __init__(self, cmd: int, writer, layout: V.ImagesLayout, iv, step: int, t0: float) -> None:
        self.cmd, self.writer, self.layout, self.iv, self.step, self.t0 = cmd, writer, layout, iv, step, t0
        self.labels = self.pixels = None  # (n,) and (n, C, H, W) arrays, written with their rows


def _optimizer_index(optimizer, torch) -> int:
    kinds = (torch.optim.SGD, torch.optim.Adam, torch.optim.Adadelta)
    for i, kind in enumerate(kinds):
        if type(optimizer) is kind:
            return i
    return -1
