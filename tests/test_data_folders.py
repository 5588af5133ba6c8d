"""Server folders only from the operator's allow-list (issue 15): the RIG and Evaluate pages offer the
dataset folders of ``$XAI_DATA_DIRS`` (default: the app's data folder) in a select box; a path from a
link (the root, the home folder, /etc/ssl, a ../ escape) is refused with one message naming no folder,
a symbolic link out of an allowed folder is never offered, and nothing else of the disk is listed."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui import data_folders
from ui.data_folders import ENVIRONMENT, REFUSED, dataset_folders, offered_folder
from xai_core import dataset, embedded
from xai_core.errors import ParameterError

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120
HOSTILE_PATHS = ["/", "~", "/etc/ssl", "/etc/ssl/certs", "data/../..", "allowed/../../etc", "../etc"]


def _image_folder(folder: Path) -> Path:
    (folder / "class_a").mkdir(parents=True)
    (folder / "class_a" / "0.png").write_bytes(b"")  # only its name is looked at
    return folder


@pytest.fixture
def allowed(tmp_path, monkeypatch) -> Path:
    """One allowed folder holding an export, an ImageFolder, a folder of no dataset and a symbolic link
    to a dataset outside it; ``$XAI_DATA_DIRS`` names it and a folder that does not exist."""
    root = tmp_path / "allowed"
    root.mkdir()
    dataset.export(0, 4, root / "shapes")
    _image_folder(root / "photos")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("no images")
    outside = _image_folder(tmp_path / "outside")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    monkeypatch.setenv(ENVIRONMENT, os.pathsep.join([str(root), str(tmp_path / "missing")]))
    return root


def test_only_the_dataset_folders_of_the_allowed_folders_are_offered(allowed):
    assert data_folders.allowed_roots() == [allowed.resolve()]
    assert dataset_folders() == {"allowed/photos": (allowed / "photos").resolve(),
                                 "allowed/shapes": (allowed / "shapes").resolve()}


def test_the_default_allow_list_is_the_apps_data_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(ENVIRONMENT, raising=False)
    monkeypatch.setattr(data_folders, "APP_DATA", _image_folder(tmp_path / "data"))
    assert data_folders.allowed_roots() == [(tmp_path / "data").resolve()]
    assert dataset_folders() == {"data": (tmp_path / "data").resolve()}  # an ImageFolder itself
    monkeypatch.setenv(ENVIRONMENT, "")
    assert data_folders.allowed_roots() == [] and dataset_folders() == {}


@pytest.mark.parametrize("path", [*HOSTILE_PATHS, "escape", "allowed/escape", "allowed/notes"])
def test_any_other_folder_is_refused_with_one_message_that_names_no_folder(allowed, path):
    folders = dataset_folders()
    with pytest.raises(ParameterError) as refused:
        offered_folder(path, folders)
    assert str(refused.value) == REFUSED
    assert "/" not in REFUSED and "allowed" not in REFUSED


def _texts(at: AppTest) -> str:
    """Everything the page sends as text: elements, widget labels, options and values, plotly specs."""
    parts = [str(getattr(e, "value", "")) for kind in ("markdown", "caption", "info", "warning", "error",
                                                       "success", "subheader", "title") for e in getattr(at, kind)]
    parts += [" ".join(map(str, [w.label, *getattr(w, "options", [])])) for w in at.selectbox]
    parts += [c.proto.spec for c in at.get("plotly_chart")]
    return "\n".join(parts)


def _linked(query: dict, page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update({key: json.dumps(value) for key, value in query.items()})
    at.switch_page(page)
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    return at


def _refused_everywhere(at: AppTest, key: str) -> None:
    texts = _texts(at)
    assert [w.value for w in at.warning].count(REFUSED) == 1, "refused once"
    assert at.selectbox(key=key).options == ["allowed/photos", "allowed/shapes"]
    for leaked in ("/etc", "etc/ssl", "certs", "outside", "escape", "notes", str(Path.home()) + "/"):
        assert leaked not in texts, leaked


@pytest.mark.parametrize("path", ["/etc/ssl", "~", "allowed/../../etc"])
def test_the_evaluate_page_refuses_a_linked_folder_and_offers_only_allowed_ones(allowed, path):
    at = _linked({"evaluate.images": "Folder", "evaluate.folder": path, "evaluate.n": 4}, "pages/5_Evaluate.py")
    _refused_everywhere(at, "evaluate.folder")
    assert at.selectbox(key="evaluate.folder").value == "allowed/photos"
    at.selectbox(key="evaluate.folder").set_value("allowed/shapes")
    at.run(timeout=TIMEOUT)
    assert not at.exception and not at.error, [e.value for e in at.error]  # the export is read: no refusal
    assert REFUSED not in [w.value for w in at.warning]


def test_the_rig_page_refuses_a_folder_it_does_not_offer_and_offers_only_allowed_ones(allowed):
    """The RIG page asks for a folder only for a model without the embedded dataset's classes (here the
    embedded weights renamed); a folder left in the session by hand is refused like a link's."""
    at = _linked({}, "pages/3_IG_and_RIG.py")
    assert "ig_rig.folder" not in [w.key for w in at.selectbox], "the embedded model trains on its own dataset"
    at.sidebar.text_area(key="w.class_names_text").set_value("\n".join(f"shape {i}" for i in dataset.CLASSES))
    at.sidebar.file_uploader(key="w.checkpoint_upload").set_value(
        ("renamed.pt", embedded.CHECKPOINT.read_bytes(), "application/octet-stream"))
    at.session_state["ig_rig.folder"] = "/etc/ssl"
    at.run(timeout=TIMEOUT)
    assert not at.exception, [e.message for e in at.exception]
    _refused_everywhere(at, "ig_rig.folder")
