"""The torch worker and its IPC.

protocol: messages and Result; shm: seqlock slots; handle: the render side; process: the worker side.

Importing this package never imports torch; only the spawned worker process does (process.worker_main).
"""

from convscope.features.inference.handle import WorkerHandle, measure_latency
from convscope.features.inference.messages import Result

__all__ = ["Result", "WorkerHandle", "measure_latency"]
