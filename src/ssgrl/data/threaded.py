"""Batches decoded by threads of this process: the data path when no worker processes run.

On a machine whose cores all run the network (a CPU with few cores), decoding worker processes
compete with it for those cores; decoding each batch with as many threads as the network uses,
in turn with the network, keeps every core busy without that contention. Pillow decodes and
resizes without holding the GIL, so the threads run in parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import torch
from torch.utils.data import default_collate

Item = TypeVar("Item")
Item_co = TypeVar("Item_co", covariant=True)


class Indexable(Protocol[Item_co]):
    """What a map-style Dataset offers: a length and items by index."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Item_co: ...


def batches_in_threads(
    dataset: Indexable[Item],
    batch_size: int,
    collate: Callable[[list[Item]], Any] = default_collate,
    threads: int | None = None,
) -> Iterator[Any]:
    """``collate`` of ``dataset``'s items in consecutive batches of ``batch_size``, in order;
    each batch's items are made by ``threads`` threads (None: ``torch.get_num_threads()``)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    count = max(1, min(threads or torch.get_num_threads(), batch_size))
    with ThreadPoolExecutor(count, thread_name_prefix="ssgrl-decode") as pool:
        for start in range(0, len(dataset), batch_size):
            indices: Sequence[int] = range(start, min(start + batch_size, len(dataset)))
            yield collate(list(pool.map(dataset.__getitem__, indices)))
