"""One way to map a function over items, serially or on any executor."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import Any

__all__ = ["map_ordered"]


def map_ordered(fn: Callable[..., Any], *iterables: Iterable,
                executor: Executor | None = None) -> list:
    """``[fn(*args) for args in zip(*iterables)]``, optionally on an executor.

    Parameters
    ----------
    fn : callable
        Must be picklable (a module-level function) for process pools and Dask.
    *iterables
        Argument sequences, as for :func:`map`.
    executor : concurrent.futures.Executor or dask.distributed.Client, optional
        None runs serially. A Dask ``Client`` is used through its
        ``get_executor()``, the concurrent.futures view of the cluster.

    Returns
    -------
    list
        The results, in input order.
    """
    if executor is None:
        return list(map(fn, *iterables))
    if not isinstance(executor, Executor) and hasattr(executor, "get_executor"):
        executor = executor.get_executor()
    return list(executor.map(fn, *iterables))
