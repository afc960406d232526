"""The cyclic garbage collector held off while a batch of CPU work builds its results.

A full collection walks every tracked object of the process, and CPython starts one whenever
the long-lived objects have grown by a quarter since the last. A batch that builds 10,000
story signatures (frozensets and tuples by the hundred thousand) grows the heap that much
several times over, so the collector re-walked the whole heap four or five times within one
routing pass: about 0.9 s of the 10,000-entry pipeline's 7.5 s CPU. What such a batch
allocates holds no reference cycles (plain refcounting frees its temporaries), so nothing
waits on the collector meanwhile; cyclic garbage made elsewhere during the pause is collected
once the last pause ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
# Whether the collector was enabled when the outermost pause began (an embedding program
# that turned it off itself keeps it off).
_resume = False


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Hold off cyclic collection for the block (nests, and is safe across threads)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
