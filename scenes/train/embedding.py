"""The training scene's side of the 2D embedding view: what scenes/embedding_view.py's EmbedView
needs to know of this scene (`TrainEmbedHost`), and `EmbedView` bound to it.

The view itself (requests, t-SNE results, warm starts, tooltip textures) is shared with the explorer; what
is particular here: the filter view refreshes every `refresh_every` training steps (and on demand); its
vectors are for the monitored held-out image and its label; images are embedded by a grid layer (the last
pooled maps at first) or the logits, held-out images first, then training images when the user adds them;
a selection is (conv layer index, filter index) in TrainState.selected; a click on a held-out image makes it
the monitored image; a restarted training process has fresh weights from the seed, so the old layouts are
dropped and a refresh is the user's call.

The panel's state is TrainState.embed (features/embedding/panel.py) and its window is panels.gui_embedding.
The scene calls, per frame, `update(handle)` and `upload()`; `on_spec(spec, info, reason)` when the worker
announces an architecture, `on_worker_restart()` after a restart.
"""

from __future__ import annotations

from convscope.engine.graph.spec import NetSpec
from convscope.features.embedding.handle import EmbedHandle
from convscope.features.embedding.images_job import ImagesJob
from convscope.features.embedding.messages import FilterData
from convscope.features.embedding.panel import EmbedPanelState
from convscope.features.training.handle import TrainHandle
from convscope.scenes import embedding_view
from convscope.scenes.train.state import TrainState


class TrainEmbedHost:
    """The training scene as an embedding_view.EmbedHost."""

    restart_keeps_weights = False  # a restarted training process starts from the seed
    split_names = ("held-out", "training", "held out")

    def __init__(self, state: TrainState) -> None:
        self.state = state

    def image_layers(self, spec: NetSpec) -> tuple[list[str], str]:
        grids = [x.name for x in spec.layers if x.is_grid and x.kind != "input"]
        last = spec.layers[-1].name
        return [*grids, last], grids[-1] if grids else last  # the last pooled maps, not the logits

    def refresh_due(self, panel: EmbedPanelState) -> bool:
        return panel.refresh_due(self.state.step)

    def requested(self) -> None:
        pass

    def filters_source(self, data: FilterData) -> str:
        return f"step {data.step:,}"

    def kind_notes(self, data: FilterData) -> dict[str, str]:
        return {}

    def images_wait(self, handle: TrainHandle) -> str | None:
        return None if handle.spec is not None else "waiting for the training process"

    def include_train(self) -> bool:
        return self.state.embed_include_train

    def dataset_name(self, handle: TrainHandle) -> str:
        return handle.info.get("dataset", "the data set")

    def images_source(self, job: ImagesJob) -> str:
        return f"step {job.step:,}"

    def set_images_note(self, text: str) -> None:
        self.state.embed_note = text

    def selected_filter(self) -> tuple[int, int] | None:
        return self.state.selected

    def select_filter(self, conv: int, index: int) -> None:
        self.state.selected = (conv, index)

    def open_image(self, job: ImagesJob, image: int) -> str:
        if image < job.n_val:
            self.state.request("set_monitor_index", index=int(image))
            return ""
        return f"image {image} is a training image; only held-out ones are shown"


class EmbedView(embedding_view.EmbedView):
    """The shared EmbedView with the training scene as its host."""

    def __init__(self, state: TrainState, embed: EmbedHandle | None = None) -> None:
        super().__init__(state.embed, TrainEmbedHost(state), embed)
        self.state = state

    def on_spec(self, spec: NetSpec, info: dict, reason: str | None) -> None:  # type: ignore[override]
        super().on_spec(spec, reason)


__all__ = ["EmbedView", "TrainEmbedHost"]
