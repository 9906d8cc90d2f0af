"""The worker side of an images job, shared by the inference and the training process.

It attaches the job's two segments (named in the request: `slot` / `count` for labels and pixels,
`vectors` / `vectors_count` for the vectors; layout in messages.py), holds both seqlocks open ("being
written") from the first batch to the last, writes each batch's rows as it is computed, and closes them
with the job's id as seq when the last batch is in.  The render side created both and unlinks them.
"""

from __future__ import annotations

import numpy as np
from convscope.engine.proc.shm import Slot
from convscope.features.embedding.messages import ImagesLayout


class ImagesWriter:
    def __init__(self, cmd: int, request: dict, layout: ImagesLayout) -> None:
        """Attach both segments (OSError / ValueError when they are not what the layout says)."""
        self.cmd, self.layout = cmd, layout
        self.pixels = Slot.attach(request["slot"], int(request["count"]))
        try:
            self.vectors = Slot.attach(request["vectors"], int(request["vectors_count"]))
        except (OSError, ValueError):
            self.pixels.close()
            raise
        if self.pixels.count != layout.count or self.vectors.count != layout.vectors_count:
            self.close()
            raise ValueError("the images segments do not fit the job")
        # One write that spans the whole job: readers see nothing until finish().
        self.pixels.begin_write()
        self.vectors.begin_write()

    def write(
        self, start: int, stop: int, vectors: np.ndarray, labels: np.ndarray | None, pixels: np.ndarray | None
    ) -> None:
        """Rows start..stop: their vectors, and their labels and pixels when given."""
        lay = self.layout
        self.vectors.payload.reshape(lay.n, lay.d)[start:stop] = vectors
        if labels is not None:
            self.pixels.payload[lay.labels][start:stop] = labels
        if pixels is not None:
            lay.pixel_view(self.pixels.payload)[start:stop] = pixels

    def finish(self) -> None:
        self.pixels.end_write(self.cmd)
        self.vectors.end_write(self.cmd)

    def close(self) -> None:
        self.pixels.close()
        self.vectors.close()
