"""Background prefetching: load item i+1 on a worker thread while the caller works on item i.

Used by :func:`gtws_dl.reconstruct.reconstruct` so that reading and normalising the next batch of input windows
from the Zarr cube (decompression releases the GIL) overlaps the forward pass of the current one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetched(
    load: Callable[[T], R], items: Iterable[T], *, depth: int = 1, enabled: bool = True
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, load(item))`` in the order of ``items``.

    With ``enabled``, up to ``depth`` items ahead of the one being consumed are loaded on one background thread
    (so at most ``depth + 1`` loaded results are alive at once); without, ``load`` runs inline. The results are
    the same either way. An exception raised by ``load`` is re-raised here, in the caller's thread, when its
    item is reached; if the caller stops early (exception, ``break``), loads not yet started are cancelled and
    the one in progress is waited for, so no thread outlives the loop.
    """
    if not enabled or depth < 1:
        for item in items:
            yield item, load(item)
        return
    pending: deque[tuple[T, Future[R]]] = deque()
    source = iter(items)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gtws-prefetch")
    try:
        for item in source:
            pending.append((item, pool.submit(load, item)))
            if len(pending) >= depth:
                break
        while pending:
            item, fut = pending.popleft()
            nxt = next(source, _END)
            if nxt is not _END:  # queue the next load before waiting: the worker never idles
                pending.append((nxt, pool.submit(load, nxt)))
            yield item, fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_END = object()
