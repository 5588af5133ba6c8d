"""A store shared by every browser session: an LRU bounded by its number of entries and by the
bytes of tensors and arrays its values hold (``size_of``). Pure Python (no streamlit), thread-safe:
sessions run their page scripts in threads of one process.

A session keeps only the keys it asked for and reads the values here, so a settings change adds
at most one entry for the whole server, not one more copy per session; what is evicted is computed
again (or read from the disk cache) when asked for again.
"""
from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, Iterator, Mapping

import numpy as np
import torch
from torch import nn


def size_of(value: Any) -> int:
    """The bytes of the tensors, arrays and modules (parameters and buffers) ``value`` holds,
    through dataclasses, mappings and sequences, each storage counted once; other objects by
    ``sys.getsizeof``."""
    seen: set[int] = set()        # ids of the objects walked
    storages: set[int] = set()    # data pointers of the tensor storages counted (views share one)

    def walk(item: Any) -> int:
        if id(item) in seen:
            return 0
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            if storage.data_ptr() in storages:
                return 0
            storages.add(storage.data_ptr())
            return storage.nbytes()
        if isinstance(item, np.ndarray):
            return item.nbytes if item.base is None else walk(item.base)
        if isinstance(item, nn.Module):
            return sum(walk(t) for t in item.state_dict(keep_vars=True).values())
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return sum(walk(getattr(item, f.name)) for f in dataclasses.fields(item))
        if isinstance(item, Mapping):
            return sum(walk(k) + walk(v) for k, v in item.items())
        if isinstance(item, (list, tuple, set, frozenset)):
            return sys.getsizeof(item) + sum(walk(v) for v in item)
        return sys.getsizeof(item)

    return walk(value)


class SharedStore:
    """Values under hashable keys, least recently used evicted beyond ``max_entries`` or
    ``max_bytes`` (the newest entry is always kept, however large)."""

    def __init__(self, max_entries: int, max_bytes: int):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._items: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def keys(self) -> list[Hashable]:
        """The keys held, least recently used first."""
        with self._lock:
            return list(self._items)

    @property
    def nbytes(self) -> int:
        """The bytes held, as ``size_of`` counts them."""
        return self._bytes

    def get(self, key: Hashable) -> Any | None:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, value: Any, size: int | None = None) -> Any:
        """Store ``value`` under ``key`` and return it, evicting beyond the bounds; ``size`` in bytes
        when the caller knows it better than ``size_of`` (default)."""
        size = size_of(value) if size is None else size
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.max_entries or self._bytes > self.max_bytes):
                self._bytes -= self._items.popitem(last=False)[1][1]
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value under ``key``, computed (outside the lock: it may take minutes) and stored when absent."""
        value = self.get(key)
        return self.put(key, compute()) if value is None else value


class SessionView(Mapping):
    """One session's entries of a ``SharedStore``: the keys it asked for, in order, whose values the
    store still holds. The session holds the keys only."""

    def __init__(self, store: SharedStore):
        self._store = store
        self._keys: dict[Hashable, None] = {}

    def __getitem__(self, key: Hashable) -> Any:
        value = self._store.get(key) if key in self._keys else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[Hashable]:
        return iter([key for key in self._keys if key in self._store])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def remember(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The shared value under ``key`` (computed when no session has it), now one of this session's;
        keys whose values were evicted are forgotten, so that the key list stays as bounded as the store."""
        value = self._store.get_or_compute(key, compute)
        self._keys = {k: None for k in self._keys if k in self._store and k != key}
        self._keys[key] = None
        return value
