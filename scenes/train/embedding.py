"""The training scene's 2D embedding view (issue 5): asks the training worker for vectors, has them placed by
t-SNE, shows them in the Embedding window and links its selection with the 3D view.

Owns the EmbedHandle (engine/worker/embed_handle.py: the t-SNE process) and the tooltip textures; the panel's
state is TrainState.embed (engine/ui/embed_panel.py) and its window is panels.gui_embedding.  The scene calls,
per frame, `update` (after reading the worker; sends requests, takes results, links the selection) and
`upload` (the only place the tooltip textures change); `on_spec` when the worker announces an architecture.

Filters mode: on demand, when the panel asks (kind, layer, "Refresh now") and every `refresh_every` training
steps, the training worker computes the layer's four vector kinds for the monitored image
(TrainHandle.embed_filters, shared memory); the chosen kind goes to the t-SNE process with the filters' stable
ids, so a refresh starts from the previous layout of the same filters even after surgery (warm start), and
the panel animates the move.  One request at a time: a refresh that falls due meanwhile waits for it.  The
panel itself works in filter indices (what the 3D view selects): results are mapped from stable ids to the
indices of the newest vectors.  Hover shows the filter as a picture (`thumbnails`: weights, or the
activation map), one small texture per filter.

Images mode: TrainHandle.embed_images computes one layer's activations of up to `image_count` images in the
worker between training steps (progress bar), then the t-SNE process places them (progress, partial layouts);
points are coloured by class; hover shows the image (one texture refilled with the hovered image); a click on
a held-out image makes it the monitored image.
"""

from __future__ import annotations

import time

import numpy as np

from engine.gpu.imgui_renderer import UiTexture
from engine.graph.spec import NetSpec
from engine.ui.embed_panel import FILTERS, IMAGES, thumbnails
from engine.worker.embed_handle import EmbedConfig, EmbedHandle, EmbedResult
from engine.worker.train_handle import ImagesJob, TrainHandle
from engine.worker.train_protocol import FilterData
from scenes.train.state import TrainState


class EmbedView:
    def __init__(self, state: TrainState, embed: EmbedHandle | None = None) -> None:
        self.state = state
        self.panel = state.embed
        self.embed = embed or EmbedHandle(EmbedConfig())
        self.convs: list[str] = []  # conv layer names of the current spec, in order
        self.ctx = None
        self._cmd: int | None = None  # embed_filters command in flight
        self._want = False  # a filters refresh is wanted (sent when nothing is in flight)
        self._data: FilterData | None = None  # the newest filter vectors (their order names the indices)
        self._shown: tuple[str, dict[int, int]] | None = None  # (layer, index -> stable id) drawn
        self._sent_at: dict[int, float] = {}  # embed job -> when its vectors were asked of the worker
        self.latencies: list[float] = []  # seconds from asking the worker to the final layout shown (filters)
        self._job: ImagesJob | None = None  # the images job this view started
        self._job_requested = False  # its vectors went to the t-SNE process
        self._asked_at = 0.0
        self._last_selected: tuple[int, int] | None = None  # the 3D selection last seen
        self._restarted = False  # the training process died and was restarted; its SPEC is next
        self._thumbs: np.ndarray | None = None  # tooltip pictures of the newest vectors, by filter index
        self._thumbs_version = 0
        self._uploaded_version = 0
        self._textures: dict[int, UiTexture] = {}
        self._refs: dict[int, object] = {}
        self._hover_tex: UiTexture | None = None
        self._hover_id: int | None = None  # image shown in _hover_tex

    # -- lifecycle ----------------------------------------------------------------------------------------
    def on_enter(self, ctx) -> None:
        self.ctx = ctx
        self.embed.launch()  # imports openTSNE while the training worker imports torch

    def on_exit(self) -> None:
        self.embed.close()
        self._release_textures()
        if self._hover_tex is not None:
            self._hover_tex.release()
            self._hover_tex = None

    def on_spec(self, spec: NetSpec, info: dict, reason: str | None) -> None:
        """A new architecture (start, edit, reset, load, restart): offer its layers, refresh the filters."""
        p = self.panel
        convs = [x.name for x in spec.layers if x.kind == "conv"]
        if convs != self.convs or reason in ("start", "reset", "load"):
            # Other layers under the same names, or other weights: no warm start from the old layouts.
            self.embed.forget()
            if p.mode == FILTERS:
                p.clear()
            self._shown = None
        self.convs = convs
        grids = [x.name for x in spec.layers if x.is_grid and x.kind != "input"]
        p.set_layers(convs, [*grids, spec.layers[-1].name])
        if p.image_layer == spec.layers[-1].name and len(grids):
            p.image_layer = grids[-1]  # the last pooled maps, not the logits, unless the user picks them
        p.class_names = tuple(spec.classes)
        self._last_selected = None  # indices may mean other filters now: link the 3D selection again
        if self._restarted:
            # Fresh weights from the seed in a new process: the old layout means nothing, and a refresh is
            # the user's call (the periodic one resumes with the step count).
            self._restarted = False
            p.clear()
            p.status = "the training process restarted: Refresh now for the new weights"
        elif p.mode == FILTERS:
            self._want = True  # a new filter shows up at once, a removed one goes

    def on_worker_restart(self) -> None:
        self._cmd = None  # the dead process will never answer it
        self._want = False
        self._restarted = True

    # -- per frame ----------------------------------------------------------------------------------------
    def update(self, handle: TrainHandle) -> None:
        st, p = self.state, self.panel
        if p.take_refresh():
            if p.mode == FILTERS:
                self._want = True
            else:
                self._start_images(handle)
        if p.refresh_due(st.step):
            self._want = True
        self._filters(handle)
        self._images(handle)
        result = self.embed.poll()
        if result is not None:
            self._show(result)
        self._progress()
        self._link_selection()

    def _filters(self, handle: TrainHandle) -> None:
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
        job = self.embed.request(kind, data.layer, rows, data.ids)
        self._sent_at[job] = self._asked_at
        p.status = f"{data.layer}: {len(rows)} filters, step {data.step:,}: placing..."

    def _start_images(self, handle: TrainHandle) -> None:
        p, st = self.panel, self.state
        if handle.spec is None or not p.image_layer:
            p.status = "waiting for the training process"
            return
        try:
            job = handle.embed_images(p.image_layer, p.image_count, st.embed_include_train)
        except (RuntimeError, KeyError, ValueError, OSError) as exc:
            p.status = f"images: {exc}"
            return
        self._job, self._job_requested = job, False
        st.embed_note = self._images_note(job, handle)
        p.status = ""

    def _images_note(self, job: ImagesJob, handle: TrainHandle) -> str:
        n_train = job.n - job.n_val
        text = f"{job.n:,} images: {job.n_val:,} held-out" + (f" + {n_train:,} training" if n_train else "")
        if job.n < self.panel.image_count:
            name = handle.info.get("dataset", "the data set")
            text += f" (all that {name} has{'' if job.include_train else ' held out'})"
        return text

    def _images(self, handle: TrainHandle) -> None:
        job, p = self._job, self.panel
        if job is None or handle.images is not job:
            return
        if job.state == "failed":
            p.status = f"images: {job.error}"
            self._job = None
        elif job.state == "done" and not self._job_requested and p.mode == IMAGES:
            self._job_requested = True
            self.embed.request(IMAGES, job.layer, job.vectors, np.arange(job.n, dtype=np.int64))

    def _show(self, r: EmbedResult) -> None:
        p = self.panel
        if r.kind == IMAGES:
            job = self._job
            if job is None or job.labels is None or job.layer != r.layer:
                return
            p.show(r.ids, r.points, kind=IMAGES, layer=r.layer, final=r.final, labels=job.labels[r.ids])
            if r.final:
                p.status = f"{r.layer}: {job.n:,} images, step {job.step:,}, t-SNE {r.seconds:.1f} s"
            return
        data = self._data
        if data is None or data.layer != r.layer:
            return  # a layout of a layer no longer shown
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
            p.status = f"{r.layer}: {len(idx)} filters, step {data.step:,}, t-SNE {1e3 * r.seconds:.0f} ms"

    def _progress(self) -> None:
        p = self.panel
        if p.mode != IMAGES:
            p.set_progress(None)  # filter layouts take tens of ms: a bar would only flicker
            return
        job = self._job
        if job is not None and job.active:
            p.set_progress(job.fraction, "activations" if job.state == "computing" else job.state)
            return
        prog = self.embed.progress
        p.set_progress(prog.fraction if prog else None, prog.phase if prog else "")

    def _link_selection(self) -> None:
        """Panel click -> 3D selection (or the monitored image); 3D selection -> the panel's ring."""
        st, p = self.state, self.panel
        if p.take_selection():
            if p.mode == FILTERS and p.selected_filter is not None and p.layer in self.convs:
                st.selected = (self.convs.index(p.layer), int(p.selected_filter))
            elif p.mode == IMAGES and p.selected_image is not None and self._job is not None:
                if p.selected_image < self._job.n_val:
                    st.request("set_monitor_index", index=int(p.selected_image))
                else:
                    p.status = f"image {p.selected_image} is a training image; only held-out ones are shown"
        if st.selected != self._last_selected:
            self._last_selected = st.selected
            if st.selected is None:
                p.selected_filter = None
            elif st.selected[0] < len(self.convs):
                name = self.convs[st.selected[0]]
                if p.layer != name:
                    p.layer = name  # show the layer of the filter picked in 3D
                    if p.mode == FILTERS:
                        p.request_refresh()
                p.selected_filter = int(st.selected[1])

    # -- GPU ----------------------------------------------------------------------------------------------
    def textures(self):
        """What gui_embed shows in a tooltip: the filter's picture, or the hovered image's texture."""
        if self.panel.mode == IMAGES:
            tex, shown = self._hover_tex, self._hover_id
            return lambda i: tex.ref if tex is not None and i == shown else None
        return self._refs

    def upload(self) -> None:
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

    def _release_textures(self) -> None:
        for t in self._textures.values():
            t.release()
        self._textures.clear()
        self._refs = {}
