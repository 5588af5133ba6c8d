"""Memory per session under repeated settings changes (issue 15): the IG and RIG page's support
networks, training images and explanations live once in bounded stores shared by every session
(``ui.shared_store``); a session keeps only keys, so a settings change adds at most one entry for
the whole server and the process's RSS stays bounded however many changes a tab makes."""
from __future__ import annotations

import gc
import weakref
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from ui.rig_session import SHARED_BOUNDS, RigSession, TrainingRequest
from ui.shared_store import SessionView, SharedStore, size_of
from xai_core import rig
from xai_core.model_handle import LoadedModel

pytestmark = pytest.mark.filterwarnings("ignore::xai_core.rig.training.StoreWarning")  # the store is unwritable

HIDDEN = 2048  # a 3·64·64 × 2048 layer: 100 MB per network copy, far above the RSS noise of a test process
CHANGES = 6


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture(scope="module")
def wide_model() -> LoadedModel:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64 * 64, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2))
    return LoadedModel.from_module(module, input_size=64, num_classes=2, mean=(0.5,) * 3, std=(0.25,) * 3,
                                   name="wide")


@pytest.fixture(scope="module")
def wide_data() -> rig.TrainingData:
    images = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return rig.TrainingData(images, torch.tensor([0, 1] * 4), (0, 1), "random")


@pytest.fixture
def unwritable_cache(tmp_path, monkeypatch):
    """A cache path through a regular file: nothing is stored on disk (and nothing is read back)."""
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XAI_LAB_CACHE", str(tmp_path / "file" / "cache"))


def _request(data: rig.TrainingData, change: int) -> TrainingRequest:
    return TrainingRequest("wide|pretrained|-|cpu", data.identity, (0.0, 2.0), 1e-5 * (change + 1), 1)


def _stores(supports: int) -> dict[str, SharedStore]:
    return {kind: SharedStore(supports if kind == "supports" else entries, size)
            for kind, (entries, size) in SHARED_BOUNDS.items()}


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads VmRSS from /proc")
def test_repeated_settings_changes_keep_the_process_memory_bounded(wide_model, wide_data, unwritable_cache):
    stores = _stores(supports=2)
    state: dict = {}
    session = RigSession(state, stores)
    first = session.train(wide_model, wide_data, _request(wide_data, 0))
    per_set = size_of(first.networks)
    assert per_set > 0.9 * HIDDEN * 3 * 64 * 64 * 4  # one trained copy of the wide network
    trained = [weakref.ref(first.networks[2.0])]
    del first
    gc.collect()
    before = _rss_bytes()
    for change in range(1, CHANGES + 1):  # a new learning rate each time: a new TrainingRequest
        supports = RigSession(state, stores).train(wide_model, wide_data, _request(wide_data, change))
        trained.append(weakref.ref(supports.networks[2.0]))
        del supports
    gc.collect()
    growth = _rss_bytes() - before
    assert len(stores["supports"]) == 2 and stores["supports"].nbytes <= 2 * per_set * 1.01
    # The sets evicted from the shared store are gone from the process, the session's state included.
    assert [ref() is None for ref in trained] == [True] * (CHANGES - 1) + [False, False]
    assert len(state["rig"]["supports"]) == 2
    # Unbounded, the tab would hold CHANGES + 1 sets; bounded, at most the two kept (plus noise).
    assert growth < 2.5 * per_set, f"RSS grew by {growth / 2**20:.0f} MB; one set is {per_set / 2**20:.0f} MB"


def test_sessions_share_one_copy_and_hold_only_keys(wide_model, wide_data, unwritable_cache, monkeypatch):
    stores = _stores(supports=4)
    calls = []
    train = rig.train_support_networks
    monkeypatch.setattr(rig, "train_support_networks", lambda *a, **k: calls.append(1) or train(*a, **k))
    request = _request(wide_data, 0)
    tab_a, tab_b = {}, {}
    a = RigSession(tab_a, stores)
    assert a.supports(request) is None
    networks = a.train(wide_model, wide_data, request)
    b = RigSession(tab_b, stores)
    assert b.supports(request) is None  # not asked for in this tab yet: its button is shown
    assert b.train(wide_model, wide_data, request) is networks and len(calls) == 1  # trained once, held once
    assert b.supports(request) is networks and len(stores["supports"]) == 1
    for tab in (tab_a, tab_b):
        view = tab["rig"]["supports"]
        assert isinstance(view, SessionView) and list(view) == [request]
        assert size_of(vars(view)["_keys"]) < 4096  # keys only: no tensor in the session's state


def test_an_evicted_set_is_asked_for_again_and_the_key_list_stays_bounded(wide_model, wide_data,
                                                                          unwritable_cache):
    stores = _stores(supports=1)
    state: dict = {}
    session = RigSession(state, stores)
    for change in range(3):
        session.train(wide_model, wide_data, _request(wide_data, change))
    assert session.supports(_request(wide_data, 0)) is None  # evicted: the page offers to train (or load) again
    assert session.supports(_request(wide_data, 2)) is not None
    assert list(vars(state["rig"]["supports"])["_keys"]) == [_request(wide_data, 2)]


def test_the_store_is_bounded_by_entries_and_by_bytes():
    by_entries = SharedStore(max_entries=2, max_bytes=1 << 30)
    for key in "abc":
        by_entries.put(key, np.zeros(10))
    assert len(by_entries) == 2 and "a" not in by_entries and by_entries.get("b") is not None
    by_entries.put("d", np.zeros(10))  # "b" was used last: "c" goes
    assert set(by_entries._items) == {"b", "d"}
    by_bytes = SharedStore(max_entries=100, max_bytes=int(2.5 * 2**20))
    for key in range(4):
        by_bytes.put(key, np.zeros(2**20, dtype=np.uint8))
    assert len(by_bytes) == 2 and by_bytes.nbytes == 2 * 2**20
    by_bytes.put("huge", np.zeros(2**22, dtype=np.uint8))  # larger than the budget: kept alone, the newest
    assert list(by_bytes._items) == ["huge"]


def test_size_of_counts_tensors_modules_and_shared_storage_once():
    weights = torch.zeros(1000)
    module = nn.Linear(100, 10)
    value = {"a": weights, "view": weights[:10], "nested": [module, (np.zeros(50),)],
             "data": rig.TrainingData(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), (0, 1), "x")}
    tensors = 4000 + 4 * (100 * 10 + 10) + 400 + 2 * 3 * 4 * 4 * 4 + 2 * 8
    assert tensors <= size_of(value) < tensors + 4096
