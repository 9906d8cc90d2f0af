"""The torch worker and its IPC.

protocol: messages and Result; shm: seqlock slots; handle: the render side; process: the worker side.

Importing this package never imports torch; only the spawned worker process does (process.worker_main).
"""

from convscope.engine.worker.handle import WorkerHandle, measure_latency
from convscope.engine.worker.protocol import Result

__all__ = ["Result", "WorkerHandle", "measure_latency"]
