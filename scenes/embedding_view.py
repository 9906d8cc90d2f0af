"""EmbedView: the 2D embedding view of any scene, one implementation for the training scene and the
explorer: asks the scene's worker for vectors, has them placed by t-SNE, shows them in the Embedding window
and links its selection with the 3D view.

Owns the EmbedHandle (features/embedding/handle.py: the t-SNE process) and the tooltip textures; the panel's
state is an EmbedPanelState (features/embedding/panel.py) that the scene keeps in its own state and draws with
gui_embed inside its own window.  What differs between scenes is an `EmbedHost` (scenes/train/embedding.py,
scenes/explore/embedding.py): which layers images are embedded by, when the filter view refreshes by itself
(every N training steps, or when the drawing changes), what a selection in 3D is, what a click on an image
does, and how the status line names what the vectors come from.

The scene calls, per frame, `update(handle)` (after reading its worker; sends requests, takes results, links
the selection) and `upload` (the only place the tooltip textures change); `on_spec` when the worker announces
an architecture, `on_worker_restart` when it restarted a dead worker.  `handle` is the scene's worker handle
(TrainHandle or WorkerHandle), which both offer the same calls: `ready`, `spec`, `embed_filters(conv index)`
-> id with `filters[id]` (embedding.messages.FilterData) and `replies[id]` (ok, text), and
`embed_images(layer, count, include_train)` -> ImagesJob followed in `handle.images`.

Filters mode: on demand, when the panel asks (kind, layer, "Refresh now") and when the host says a refresh is
due, the worker computes the layer's four vector kinds (shared memory); the chosen kind goes to the t-SNE
process with the filters' stable ids, so a refresh starts from the previous layout of the same filters even
after surgery (warm start), and the panel animates the move.  One request at a time: a refresh that falls due
meanwhile waits for it.  The panel itself works in filter indices (what the 3D view selects): results are
mapped from stable ids to the indices of the newest vectors.  Hover shows the filter as a picture
(`thumbnails`: weights, or the activation map), one small texture per filter.

Images mode: the worker computes one layer's activations of up to `image_count` images between its own work
(progress bar), then the t-SNE process places them (progress, partial layouts); points are coloured by class;
hover shows the image (one texture refilled with the hovered image, grey or colour, at the job's thumbnail
size); a click does what the host says (the training scene monitors a held-out image, the explorer feeds
the image to the network).  From
`raster_min_points` points on, the panel paints them into one picture (engine/ui/point_raster.py) that
`upload` puts into a texture of the plot's size.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
from convscope.engine.gpu.imgui_renderer import UiTexture
from convscope.engine.graph.dag import Dag
from convscope.engine.graph.explain import class_names, output_layer
from convscope.engine.graph.spec import NetSpec, as_dag
from convscope.features.embedding.handle import EmbedConfig, EmbedHandle, EmbedResult
from convscope.features.embedding.images_job import ImagesJob
from convscope.features.embedding.messages import FilterData
from convscope.features.embedding.panel import FILTERS, IMAGES, EmbedPanelState, thumbnails


class EmbedHost(Protocol):
    """What EmbedView needs of the scene it is in."""

    restart_keeps_weights: bool  # a restarted worker has the same weights (so the layouts still hold)
    # What the images mode calls its two image sets, and the first in "all that MNIST has ..." (when only it
    # was asked for): ("held-out", "training", "held out").
    split_names: tuple[str, str, str]

    def image_layers(self, spec: Dag) -> tuple[list[str], str]:
        """The layers offered in images mode, and the one chosen when the current choice is gone."""
        ...

    def refresh_due(self, panel: EmbedPanelState) -> bool:
        """Whether the filter view should refresh by itself now (called once a frame in filters mode)."""
        ...

    def requested(self) -> None:
        """A filters request went to the worker (for the host's own refresh bookkeeping)."""
        ...

    def filters_source(self, data: FilterData) -> str:
        """Where filter vectors come from, for the status line ("step 1,200", "top guess 3")."""
        ...

    def kind_notes(self, data: FilterData) -> dict[str, str]:
        """Per vector kind, a line for the panel's tooltips (what the gradients are taken against)."""
        ...

    def images_wait(self, handle) -> str | None:
        """None when `handle.embed_images` can run now, else why not yet (shown; asked again next frame)."""
        ...

    def include_train(self) -> bool: ...

    def dataset_name(self, handle) -> str: ...

    def images_source(self, job: ImagesJob) -> str:
        """Where image vectors come from, for the status line ("step 1,200", "MNIST")."""
        ...

    def set_images_note(self, text: str) -> None:
        """Which images the layout shows (and why fewer than asked), for the host's window."""
        ...

    def selected_filter(self) -> tuple[int, int] | None:
        """(conv layer index, filter index) of the 3D view's selection, or None."""
        ...

    def select_filter(self, conv: int, index: int) -> None:
        """Select filter `index` of conv layer `conv` in the 3D view (a click on its point)."""
        ...

    def open_image(self, job: ImagesJob, image: int) -> str:
        """A click on image `image` of `job`: act on it; returns a status line ("" for none)."""
        ...


class EmbedView:
    def __init__(self, panel: EmbedPanelState, host: EmbedHost, embed: EmbedHandle | None = None) -> None:
        self.panel = panel
        self.host = host
        self.embed = embed or EmbedHandle(EmbedConfig())
        self.convs: list[str] = []  # conv layer names of the current spec, in order
        self.ctx = None
        self.entered = False  # on_enter ran (the explorer enters the view when its window first opens)
        self._cmd: int | None = None  # embed_filters command in flight
        self._want = False  # a filters refresh is wanted (sent when nothing is in flight)
        self._want_images = False  # an images job is wanted (started when the host says it can)
        self._data: FilterData | None = None  # the newest filter vectors (their order names the indices)
        self._shown: tuple[str, dict[int, int]] | None = None  # (layer, index -> stable id) drawn
        self._sent_at: dict[int, float] = {}  # embed job -> when its vectors were asked of the worker
        self.latencies: list[float] = []  # seconds from asking the worker to the final layout shown (filters)
        self._job: ImagesJob | None = None  # the images job this view started
        self._job_requested = False  # its vectors went to the t-SNE process
        self._asked_at = 0.0
        self._last_selected: tuple[int, int] | None = None  # the 3D selection last seen
        self._restarted = False  # the worker died and was restarted with fresh weights; its SPEC is next
        self._thumbs: np.ndarray | None = None  # tooltip pictures of the newest vectors, by filter index
        self._thumbs_version = 0
        self._uploaded_version = 0
        self._textures: dict[int, UiTexture] = {}
        self._refs: dict[int, object] = {}
        self._hover_tex: UiTexture | None = None
        self._hover_id: int | None = None  # image shown in _hover_tex
        self._raster_tex: UiTexture | None = None  # the images mode's points as one picture (panel.raster)
        self._raster_uploaded = -1  # panel.raster_version in _raster_tex

    # -- lifecycle ----------------------------------------------------------------------------------------
    def on_enter(self, ctx) -> None:
        self.ctx = ctx
        self.entered = True
        self.embed.launch()  # imports openTSNE (a second or so) while the scene does other things

    def on_exit(self) -> None:
        self.embed.close()
        self._release_textures()
        if self._hover_tex is not None:
            self._hover_tex.release()
            self._hover_tex = None
        self._release_raster()

    def on_spec(self, spec: NetSpec | Dag, reason: str | None) -> None:
        """A new architecture (start, edit, reset, load, restart, another model): offer its layers, refresh
        the filters.  Reasons "start", "reset" and "load" mean other weights; "model" another network.
        Filters are those of the conv layers in network order (the worker numbers them the same way)."""
        p = self.panel
        spec = as_dag(spec)
        convs = [x.name for x in spec.layers if x.kind == "conv"]
        if convs != self.convs or reason in ("start", "reset", "load", "model"):
            # Other layers under the same names, or other weights: no warm start from the old layouts.
            self.embed.forget()
            if p.mode == FILTERS:
                p.clear()
            self._shown = None
        if reason == "model":
            # Another network: its images layout is not this one's either.
            p.clear()
            self._job, self._want_images = None, False
            self._data, self._thumbs = None, None
        self.convs = convs
        layers, default = self.host.image_layers(spec)
        p.set_layers(convs, layers)
        if p.image_layer not in layers or p.image_layer == spec.layers[-1].name:
            p.image_layer = default  # the host's choice, not the logits, unless the user picks them
        out = output_layer(spec)
        p.class_names = class_names(spec, out.count) if out is not None else tuple(spec.classes)
        self._last_selected = None  # indices may mean other filters now: link the 3D selection again
        if self._restarted:
            # Fresh weights from the seed in a new process: the old layout means nothing, and a refresh is
            # the user's call (the periodic one resumes with the step count).
            self._restarted = False
            p.clear()
            p.status = "the training process restarted: Refresh now for the new weights"
        elif p.mode == FILTERS:
            self._want = True  # a new filter shows up at once, a removed one goes
        if not convs and p.mode == FILTERS:
            p.status = ""  # the panel says there are no filters; an error about the old network is moot

    def on_worker_restart(self) -> None:
        self._cmd = None  # the dead process will never answer it
        if self.host.restart_keeps_weights:
            self._want = self.panel.mode == FILTERS  # same weights: just ask the new process again
        else:
            self._want = False
            self._restarted = True

    # -- per frame ----------------------------------------------------------------------------------------
    def update(self, handle) -> None:
        p = self.panel
        if p.take_refresh():
            if p.mode == FILTERS:
                self._want = True
            else:
                self._want_images = True
        if p.mode == FILTERS and self.host.refresh_due(p):
            self._want = True
        self._filters(handle)
        self._start_images(handle)
        self._images()
        result = self.embed.poll()
        if result is not None:
            self._show(result)
        self._progress()
        self._link_selection()

    def _filters(self, handle) -> None:
        p = self.panel
        if self._cmd is not None:
            data = handle.filters.pop(self._cmd, None)
            reply = handle.replies.get(self._cmd)
            if data is not None:
                self._cmd = None
                self._take_filters(data)
            elif reply is not None:  # answered without vectors: refused, or written for a replaced spec
                self._cmd = None
                if not reply[0]:
                    p.status = reply[1]
                else:
                    self._want = True
        if self._want and self._cmd is None and p.mode == FILTERS and handle.ready and p.layer in self.convs:
            self._want = False
            self._cmd = handle.embed_filters(self.convs.index(p.layer))
            self._asked_at = time.perf_counter()
            self.host.requested()

    def _take_filters(self, data: FilterData) -> None:
        p = self.panel
        if p.mode != FILTERS or data.layer != p.layer or data.layer not in self.convs:
            self._want = p.mode == FILTERS  # the user moved on meanwhile: ask for the layer shown now
            return
        self._data = data
        kind = p.kind
        rows = data.vectors[kind]
        self._thumbs = thumbnails(kind, rows, data.shape_of(kind))
        self._thumbs_version += 1
        p.kind_notes = self.host.kind_notes(data)
        job = self.embed.request(kind, data.layer, rows, data.ids)
        self._sent_at[job] = self._asked_at
        p.status = f"{data.layer}: {len(rows)} filters, {self.host.filters_source(data)}: placing..."

    def _start_images(self, handle) -> None:
        p = self.panel
        if not self._want_images:
            return
        if p.mode != IMAGES:
            self._want_images = False
            return
        wait = self.host.images_wait(handle)
        if wait is not None:
            p.status = wait  # asked again next frame
            return
        self._want_images = False
        if not p.image_layer:
            p.status = "no layer to embed images by"
            return
        try:
            job = handle.embed_images(p.image_layer, p.image_count, self.host.include_train())
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            p.status = _images_line(str(exc))
            return
        self._job, self._job_requested = job, False
        classes = (getattr(handle, "image_data", None) or {}).get("classes")
        if classes:
            self.panel.class_names = tuple(classes)  # the image set's own names (an ImageFolder's folders)
        self.host.set_images_note(self._images_note(job, handle))
        p.status = ""

    def _images_note(self, job: ImagesJob, handle) -> str:
        first, second, only_first = self.host.split_names
        n_second = job.n - job.n_val
        text = f"{job.n:,} images: {job.n_val:,} {first}" + (f" + {n_second:,} {second}" if n_second else "")
        if job.n < self.panel.image_count:
            name = self.host.dataset_name(handle)
            text += f" (all that {name} has{'' if job.include_train else ' ' + only_first})"
        return text

    def _images(self) -> None:
        job, p = self._job, self.panel
        if job is None:
            return
        if job.state in ("failed", "cancelled"):
            p.status = _images_line(job.error or job.state)
            self._job = None
        elif job.state == "done" and not self._job_requested and p.mode == IMAGES:
            self._job_requested = True
            # The vectors go from the worker's segment to the t-SNE process; only labels and pixels came here.
            vectors = job.shared_vectors()
            if vectors is None:
                p.status = "images: the job's vectors are gone"
                return
            self.embed.request(IMAGES, job.layer, vectors, np.arange(job.n, dtype=np.int64))

    def _show(self, r: EmbedResult) -> None:
        p = self.panel
        if r.kind == IMAGES:
            job = self._job
            if job is None or job.labels is None or job.layer != r.layer:
                return
            p.show(r.ids, r.points, kind=IMAGES, layer=r.layer, final=r.final, labels=job.labels[r.ids])
            if r.final:
                p.status = (
                    f"{r.layer}: {job.n:,} images, {self.host.images_source(job)}, t-SNE {r.seconds:.1f} s"
                )
            return
        data = self._data
        if data is None or data.layer != r.layer or p.mode != FILTERS:
            # A layout of a layer no longer shown, or one that lands after the switch to images mode (it
            # would overwrite that mode's status line; going back to filters asks again anyway).
            return
        index_of = {int(sid): i for i, sid in enumerate(data.ids)}
        keep = np.array([int(s) in index_of for s in r.ids], bool)
        sids = r.ids[keep]
        idx = np.array([index_of[int(s)] for s in sids], np.int64)
        # The panel matches points by index; where an index now names another filter than the one drawn
        # there (a filter before it was removed), start afresh rather than animate from the wrong points.
        if self._shown is not None and self._shown[0] == r.layer:
            drawn = self._shown[1]
            if any(drawn.get(int(i), int(s)) != int(s) for i, s in zip(idx, sids, strict=True)):
                p.clear()
        p.show(idx, r.points[keep], kind=r.kind, layer=r.layer, final=r.final)
        self._shown = (r.layer, {int(i): int(s) for i, s in zip(idx, sids, strict=True)})
        if r.final:
            asked = self._sent_at.pop(r.job, None)
            if asked is not None:
                self.latencies.append(time.perf_counter() - asked)
            source = self.host.filters_source(data)
            p.status = f"{r.layer}: {len(idx)} filters, {source}, t-SNE {1e3 * r.seconds:.0f} ms"

    def _progress(self) -> None:
        p = self.panel
        if p.mode != IMAGES:
            p.set_progress(None)  # filter layouts take tens of ms: a bar would only flicker
            return
        if self._want_images:
            p.set_progress(0.0, "waiting")  # the status line says for what (EmbedHost.images_wait)
            return
        job = self._job
        if job is not None and job.active:
            p.set_progress(job.fraction, "activations" if job.state == "computing" else job.state)
            return
        prog = self.embed.progress
        p.set_progress(prog.fraction if prog else None, prog.phase if prog else "")

    def _link_selection(self) -> None:
        """Panel click -> 3D selection (or the host's image action); 3D selection -> the panel's ring."""
        p = self.panel
        if p.take_selection():
            if p.mode == FILTERS and p.selected_filter is not None and p.layer in self.convs:
                self.host.select_filter(self.convs.index(p.layer), int(p.selected_filter))
            elif p.mode == IMAGES and p.selected_image is not None and self._job is not None:
                text = self.host.open_image(self._job, int(p.selected_image))
                if text:
                    p.status = text
        selected = self.host.selected_filter()
        if selected != self._last_selected:
            self._last_selected = selected
            if selected is None:
                p.selected_filter = None
            elif selected[0] < len(self.convs):
                name = self.convs[selected[0]]
                if p.layer != name:
                    p.layer = name  # show the layer of the filter picked in 3D
                    if p.mode == FILTERS:
                        p.request_refresh()
                p.selected_filter = int(selected[1])

    # -- GPU ----------------------------------------------------------------------------------------------
    def textures(self):
        """What gui_embed shows in a tooltip: the filter's picture, or the hovered image's texture."""
        if self.panel.mode == IMAGES:
            tex, shown = self._hover_tex, self._hover_id
            return lambda i: tex.ref if tex is not None and i == shown else None
        return self._refs

    def upload(self) -> None:
        if self.ctx is None:
            return
        if self._thumbs_version != self._uploaded_version and self._thumbs is not None:
            self._uploaded_version = self._thumbs_version
            thumbs = self._thumbs
            size = (thumbs.shape[2], thumbs.shape[1])
            comps = 3 if thumbs.ndim == 4 else 1
            old = next(iter(self._textures.values()), None)
            if len(self._textures) != len(thumbs) or (
                old is not None and (old.size != size or old.components != comps)
            ):
                self._release_textures()
            for i, pic in enumerate(thumbs):
                if i not in self._textures:
                    self._textures[i] = UiTexture(self.ctx, size, comps, smooth=False)
                self._textures[i].upload(pic)
            self._refs = {i: t.ref for i, t in self._textures.items()}
        self._upload_hovered_image()
        self._upload_raster()

    def _upload_raster(self) -> None:
        """The panel's picture of many points: a texture of the plot's size, refilled when it repaints."""
        p = self.panel
        w, h = p.raster_size
        if p.mode != IMAGES or w < 1 or h < 1:
            return
        if self._raster_tex is None or self._raster_tex.size != (w, h):
            self._release_raster()
            self._raster_tex = UiTexture(self.ctx, (w, h), 4, smooth=False)
            p.raster_tex, p.raster_tex_size = self._raster_tex.ref, (w, h)
        pic = p.raster
        if pic is not None and p.raster_version != self._raster_uploaded and pic.shape[:2] == (h, w):
            self._raster_tex.upload(pic)
            self._raster_uploaded = p.raster_version

    def _release_raster(self) -> None:
        if self._raster_tex is not None:
            self._raster_tex.release()
            self._raster_tex = None
        self.panel.raster_tex, self.panel.raster_tex_size = None, (0, 0)
        self._raster_uploaded = -1

    def _upload_hovered_image(self) -> None:
        p, job = self.panel, self._job
        hovered = p.hovered if p.mode == IMAGES else None
        if hovered is None or job is None or job.images is None or hovered == self._hover_id:
            return
        if not 0 <= hovered < len(job.images):
            return
        img = job.images[hovered]  # (C, H, W) uint8
        c, h, w = img.shape
        comps = 3 if c == 3 else 1
        if self._hover_tex is None or self._hover_tex.size != (w, h) or self._hover_tex.components != comps:
            if self._hover_tex is not None:
                self._hover_tex.release()
            self._hover_tex = UiTexture(self.ctx, (w, h), comps, smooth=False)
        self._hover_tex.upload(img.transpose(1, 2, 0) if comps == 3 else img[0])
        self._hover_id = hovered
        p.image_aspect = w / h

    def _release_textures(self) -> None:
        for t in self._textures.values():
            t.release()
        self._textures.clear()
        self._refs = {}


def _images_line(text: str) -> str:
    """The status line of an images job that did not run: what the worker or the handle said, once
    prefixed (the worker's refusals already start with "images")."""
    return text if text.startswith("images") else f"images: {text}"


__all__ = ["EmbedHost", "EmbedView"]
