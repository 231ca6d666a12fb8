"""One way to map a function over items, serially or on any executor."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

__all__ = ["map_ordered"]


def map_ordered(fn: Callable[..., Any], *iterables: Iterable,
                executor: Executor | None = None) -> list:
    """``[fn(*args) for args in zip(*iterables)]``, serially or on ``executor`` (a
    concurrent.futures executor, or a Dask ``Client`` through ``get_executor()``); ``fn``
    must be picklable for process pools and Dask."""
    if executor is None:
        return list(map(fn, *iterables))
    if not isinstance(executor, Executor) and hasattr(executor, "get_executor"):
        executor = executor.get_executor()
    return list(executor.map(fn, *iterables))
