"""The torch worker and its IPC.

protocol: messages and Result; shm: seqlock slots; handle: the render side; process: the worker side.

Importing this package never imports torch; only the spawned worker process does (process.worker_main).
"""

from engine.worker.handle import WorkerHandle, measure_latency
from engine.worker.protocol import Result

__all__ = ["Result", "WorkerHandle", "measure_latency"]
