"""Splitting a query into sub-batches, and padding each to one of a few pre-compiled batch sizes.

A query of S items is split into ceil(S / sub_batch) sub-batches of at most `sub_batch` items
(DeepRecSched's data-level parallelism: the sub-batches of one query can run on several workers at
once; sub_batch >= S keeps a query whole, task-level parallelism). Each sub-batch is padded up to
the smallest compiled size that holds it, so nothing compiles while serving. The compiled sizes
are the powers of two below `sub_batch` and `sub_batch` itself: log2(sub_batch) + 1 programs, and
a padded sub-batch holds less than twice its items.
"""

import bisect
from collections.abc import Iterable


def padded_sizes(sub_batch: int) -> tuple[int, ...]:
    """Sizes to compile for sub-batches of at most `sub_batch` items: 1, 2, 4, ..., sub_batch."""
    if sub_batch < 1:
        raise ValueError(f"sub_batch must be >= 1; got {sub_batch}.")
    powers = []
    size = 1
    while size < sub_batch:
        powers.append(size)
        size *= 2
    return (*powers, sub_batch)


def split_query(query_size: int, sub_batch: int) -> list[int]:
    """The item counts of the sub-batches of one query: full sub-batches, then the remainder."""
    if query_size < 1 or sub_batch < 1:
        raise ValueError(f"Need query_size >= 1 and sub_batch >= 1; got {query_size}, {sub_batch}.")
    full, remainder = divmod(query_size, sub_batch)
    return [sub_batch] * full + ([remainder] if remainder else [])


def pad_to(items: int, sizes: Iterable[int]) -> int:
    """The smallest of `sizes` that holds `items`; raises ValueError if none does."""
    ordered = sorted(sizes)
    index = bisect.bisect_left(ordered, items)
    if index == len(ordered):
        raise ValueError(f"No compiled size holds {items} items; compiled sizes are {ordered}.")
    return ordered[index]


def compiled_sizes(sub_batch: int, max_query_size: int) -> tuple[int, ...]:
    """The sizes of `padded_sizes(sub_batch)` that a query of at most max_query_size items uses."""
    sizes = padded_sizes(sub_batch)
    largest = pad_to(min(sub_batch, max_query_size), sizes)
    return tuple(size for size in sizes if size <= largest)
