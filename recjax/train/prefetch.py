"""A background thread that prepares batches while the step runs, and how long the step waited.

Reading, parsing and mapping a batch are NumPy work that mostly releases the GIL, and the jitted
step runs on XLA's own threads, so one producer thread overlaps loading with computing without a
data library (grain would add a dependency and processes for work that one thread keeps ahead
of the step here; `waited_seconds` shows when it does not).

    with Prefetcher(source_iterator, transform=to_device, depth=4) as batches:
        for batch in batches: ...
        batches.waited_seconds     # time the consumer spent blocked in next()
"""

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

_END = object()


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class Prefetcher:
    """Iterates `items` on a background thread, `depth` items ahead of the consumer.

    Args:
      items: any iterator; it is advanced only on the background thread.
      transform: applied to each item on the background thread (e.g. host -> device).
      depth: the most items prepared ahead.

    An exception on the background thread is raised by the consumer's next `next()`. `close()`
    (or leaving the `with` block) stops the thread; items prepared but not taken are dropped.
    """

    def __init__(
        self, items: Iterator[Any], transform: Callable[[Any], Any] | None = None, depth: int = 4
    ):
        if depth < 1:
            raise ValueError(f"depth must be >= 1; got {depth}.")
        self._items = items
        self._transform = transform or (lambda item: item)
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self.waited_seconds = 0.0
        self.taken = 0
        self._thread = threading.Thread(target=self._run, name="recjax-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._items:
                if not self._put(self._transform(item)):
                    return
            self._put(_END)
        except BaseException as error:  # handed to the consumer
            self._put(_Failure(error))

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self):
        start = time.perf_counter()
        item = self._queue.get()
        self.waited_seconds += time.perf_counter() - start
        if item is _END:
            self._queue.put(_END)  # later calls end too
            raise StopIteration
        if isinstance(item, _Failure):
            raise item.error
        self.taken += 1
        return item

    def close(self) -> None:
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=10)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
