"""The explorer's side of the 2D embedding view: what scenes/embedding_view.py's EmbedView needs to
know of the explore scene, and `explore_embed_view` to make one.

What is particular here:
- Filter vectors are for the current drawing, computed by the inference worker (WorkerHandle.embed_filters).
  A drawing has no label, so the gradient kinds are those of the cross-entropy against the network's own top
  guess for it (the panel's tooltips say so, with the class).  Filter coefficients are the same for every
  drawing; the three other kinds refresh by themselves when the drawing changes (at stroke end, not while
  the pen moves), as long as "follow the drawing" is on, and on demand.
- A selection in 3D is a node id (ExploreState.selected).  Filter f of a conv layer is its feature map f:
  a node of that map, or of the pool map right after it, selects the filter's point; a click on the point
  selects the map's most active node for the drawing (its centre when the map is dark), so the details
  panel shows the filter at work where it responds most; the scene outlines the map.
- Images come from the worker's image set, the one the model's input takes (features/data/image_set.py):
  for a grey model MNIST's test (then training) images from --data-dir, else the built-in scikit-learn
  digits, which the window says; for a colour model the test set the Image panel opens first (CIFAR-10,
  then its training images where there are some, or an ImageFolder), or one line saying there is none.
  Either is resized to the model's H x W.  They can be embedded by any layer, the input's pixels and the
  fc layers included (so the MLP, which has no filters, has an images mode too).  A click on a grey image
  puts it on the drawing pad, on a colour one opens it in the Image panel: either way through the network.
- A restarted worker loads the same weights, so the layouts still hold: the view just asks again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from convscope.engine.graph.dag import Dag
from convscope.features.embedding.images_job import ImagesJob
from convscope.features.embedding.messages import FilterData
from convscope.features.embedding.panel import EmbedPanelState
from convscope.features.inference.handle import WorkerHandle
from convscope.scenes.embedding_view import EmbedView
from convscope.scenes.explore.image_panel import model_input_spec, takes_images

if TYPE_CHECKING:
    from convscope.scenes.explore.scene import ExploreScene

DRAWING_KINDS = ("filter_gradients", "activations", "activation_gradients")  # change with the drawing


class ExploreEmbedHost:
    """The explore scene as an embedding_view.EmbedHost."""

    restart_keeps_weights = True  # a restarted worker loads the same weights file
    split_names = ("test", "training", "in its test set")

    def __init__(self, scene: ExploreScene) -> None:
        self.scene = scene
        self._asked_seq = -1  # the drawing the newest filters request was for
        self._opening = False  # an images request is waiting for the worker's image set

    # -- filters ------------------------------------------------------------------------------------------
    def image_layers(self, spec: Dag) -> tuple[list[str], str]:
        names = [x.name for x in spec.layers]  # the input's pixels too: the baseline the layers improve on
        return names, names[-2] if len(names) > 1 else names[-1]  # the last hidden layer

    def refresh_due(self, panel: EmbedPanelState) -> bool:
        s = self.scene
        if not s.state.embed_follow or panel.kind not in DRAWING_KINDS or s.pad.drawing:
            return False  # coefficients do not change with the drawing; a stroke refreshes when it ends
        return s.sent_seq != self._asked_seq

    def requested(self) -> None:
        self._asked_seq = self.scene.sent_seq

    def filters_source(self, data: FilterData) -> str:
        return f"the drawing's top guess {self._class(data.label)}"

    def kind_notes(self, data: FilterData) -> dict[str, str]:
        guess = self._class(data.label)
        against = f"cross-entropy against the network's own top guess ({guess}): a drawing has no label"
        return {
            "coefficients": "the filter's weights (the same for every drawing)",
            "filter_gradients": f"d loss / d the filter's weights; loss = {against}",
            "activations": "the filter's activation map for the drawing",
            "activation_gradients": f"d loss / d the filter's activation map; loss = {against}",
        }

    def _class(self, label: int) -> str:
        classes = self.scene.state.classes
        return classes[label] if 0 <= label < len(classes) else str(label)

    # -- images -------------------------------------------------------------------------------------------
    def images_wait(self, handle: WorkerHandle) -> str | None:
        if not handle.ready:
            return "waiting for the network"
        if not self._opening:  # once per request: the worker keeps the set, and retries one that failed
            self._opening = True
            handle.open_images(self.scene.config.data_dir, retry=True)
        if handle.image_data is None and handle.image_error is None:
            if takes_images(model_input_spec(handle)):
                return "loading the images (CIFAR-10 or an ImageFolder from --data-dir)..."
            return "loading the images (MNIST from --data-dir, else the built-in digits)..."
        self._opening = False
        info = handle.image_data or {}
        self.scene.state.embed_data_note = info.get("note", "")
        self.scene.state.embed_data_reason = info.get("reason", "")
        return None  # with an image_error, embed_images says it

    def include_train(self) -> bool:
        return self.scene.state.embed_include_train

    def dataset_name(self, handle: WorkerHandle) -> str:
        return (handle.image_data or {}).get("dataset", "the image set")

    def images_source(self, job: ImagesJob) -> str:
        return self.dataset_name(self.scene.worker)

    def set_images_note(self, text: str) -> None:
        self.scene.state.embed_note = text

    def open_image(self, job: ImagesJob, image: int) -> str:
        if job.images is None or not 0 <= image < len(job.images):
            return ""
        label = int(job.labels[image]) if job.labels is not None else -1
        which = "test" if image < job.n_val else "training"
        name = self._image_class(label)
        if job.images.shape[1] == 3:  # a colour model: the Image panel feeds it, not the pad
            return self._open_colour(job, image, f"{which} image {image} ({name})")
        self.scene.pad.set_image(job.images[image][0].astype("float32") / 255.0)
        return f"{which} image {image} ({name}) is on the pad"

    def _open_colour(self, job: ImagesJob, image: int, what: str) -> str:
        """A colour image into the Image panel: the test set's own picture when the panel lists that set
        (so Prev / Next walk on from it), else (a training image) the thumbnail itself."""
        panel = self.scene.images.state
        entry = (self.scene.worker.image_data or {}).get("entry", "")
        k = next((k for k, e in enumerate(panel.datasets, 1) if str(e.path) == entry), 0)
        if image < job.n_val and k:
            if panel.choice != k or panel.source is None:
                panel.open_dataset(k)
            if panel.choice == k and panel.select(image):
                return f"{what} is in the Image panel"
        label = self._image_class(int(job.labels[image]))
        panel.show_pixels(job.images[image].transpose(1, 2, 0), what, label)
        return f"{what} is in the Image panel"

    def _image_class(self, label: int) -> str:
        """A label of the image set by its own class names (a model's may differ: an ImageFolder's)."""
        classes = (self.scene.worker.image_data or {}).get("classes") or self.scene.state.classes
        return classes[label] if 0 <= label < len(classes) else str(label)

    # -- selection ----------------------------------------------------------------------------------------
    def _convs(self) -> list:
        spec = self.scene.spec
        return [x for x in spec.layers if x.kind == "conv"] if spec is not None else []

    def selected_filter(self) -> tuple[int, int] | None:
        s = self.scene
        node, spec = s.state.selected, s.spec
        if spec is None or not 0 <= node < spec.total_nodes:
            return None
        layer = spec.layer_of(node)
        source = spec.layer(layer.inputs[0].source) if layer.inputs else None
        if layer.kind == "pool" and source is not None and source.kind == "conv":
            conv = source  # pool map f is conv map f, pooled
        elif layer.kind == "conv":
            conv = layer
        else:
            return None
        c, h, w = layer.shape
        if c != conv.shape[0]:
            return None
        names = [x.name for x in self._convs()]
        return names.index(conv.name), (node - layer.start) // (h * w)

    def select_filter(self, conv: int, index: int) -> None:
        if self.scene.compare is not None:
            return  # side by side, the 3D views have no selection (the panel still rings the point)
        convs = self._convs()
        if not 0 <= conv < len(convs) or not 0 <= index < convs[conv].shape[0]:
            return
        layer = convs[conv]
        _, h, w = layer.shape
        base = layer.start + index * h * w
        acts = self.scene.activations
        at = (h // 2) * w + w // 2  # the centre of a dark map
        if acts is not None and len(acts) >= base + h * w:
            m = acts[base : base + h * w]
            if float(m.max()) > 0.0:
                at = int(m.argmax())
        self.scene.state.selected = base + at


def explore_embed_view(scene: ExploreScene) -> EmbedView:
    """The explorer's EmbedView; its panel state is scene.state.embed."""
    return EmbedView(scene.state.embed, ExploreEmbedHost(scene))


__all__ = ["DRAWING_KINDS", "ExploreEmbedHost", "explore_embed_view"]
