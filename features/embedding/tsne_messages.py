"""The t-SNE protocol: the typed messages between the render process (EmbedHandle) and the t-SNE process.

A job's arrays go through two segments the render side creates and unlinks at TsneAttached: the input
(the vectors, or none when they stay in an images job's segment, then the warm-start layout and the
known-row mask; `process.input_count`) and the output (n x 2, partial layouts and the final one).
docs/PROTOCOLS.md has the table.  Both processes import this module: the standard library only.
"""

from __future__ import annotations

from typing import NamedTuple

# -- render -> t-SNE process ----------------------------------------------------------------------


class TsneJob(NamedTuple):
    job: int
    in_name: str  # the warm start, after the vectors unless shared_vectors
    out_name: str  # (n, 2) layouts
    n: int
    d: int
    params: dict  # TsneParams fields
    shared_vectors: bool = False  # the vectors stay in an images job's segment: its descriptor follows


class TsneCancel(NamedTuple):
    job: int


class TsneQuit(NamedTuple):
    pass


# -- t-SNE process -> render ----------------------------------------------------------------------


class TsneReady(NamedTuple):
    engine: str  # "opentsne" or "sklearn"
    pid: int


class TsneAttached(NamedTuple):
    job: int  # every segment of the job is mapped: the render side unlinks them


class TsneProgress(NamedTuple):
    job: int
    fraction: float
    phase: str  # "neighbors", "exaggeration", "optimize"
    seq: int  # > 0: a partial layout with this seq is in the output segment


class TsneDone(NamedTuple):
    job: int
    seq: int  # the final layout's seq in the output segment
    seconds: float
    kl: float
    engine: str


class TsneCancelled(NamedTuple):
    job: int


class TsneFailed(NamedTuple):
    job: int
    text: str
