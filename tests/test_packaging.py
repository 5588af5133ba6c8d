"""The installed package stands on its own: its data ships inside it and its console script resolves.

The project is copied out of the repository and installed with ``pip --target`` into an
empty folder; a fresh interpreter started elsewhere must import ``xai_core`` from there,
load the embedded checkpoint and the sample photos, and find the ``xai-lab`` entry point.
Offline: no build isolation, no index, no dependencies (they are this environment's).
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import json, sys
from importlib.metadata import distribution
target = sys.argv[1]
import xai_core
from xai_core.imageio import list_samples, load_sample
from xai_core.models import load_model, weights_path
model = load_model("embedded", device="cpu", allow_download=False)
[script] = distribution("xai-lab").entry_points.select(group="console_scripts", name="xai-lab")
print(json.dumps({
    "package": xai_core.__file__, "checkpoint": str(weights_path("embedded")), "classes": model.num_classes,
    "samples": list_samples(), "cat": list(load_sample("cat").size),
    "script": script.value, "callable": callable(script.load()),
}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project installed, without dependencies, into a folder outside the repository."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "xai_core", source / "xai_core", ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, timeout=300)
    return target


def test_installed_package_loads_its_data_from_outside_the_repository(installed, tmp_path):
    out = subprocess.run([sys.executable, "-c", _PROBE, str(installed)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(installed), "PATH": ""})
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert Path(facts["package"]).is_relative_to(installed)  # not the repository's copy
    assert Path(facts["checkpoint"]) == installed / "xai_core" / "assets" / "embedded.pt"
    assert facts["classes"] == 8
    assert {"cat", "astronaut", "coffee", "rocket"} <= set(facts["samples"]) and min(facts["cat"]) >= 224
    assert facts["script"] == "xai_core.cli:main" and facts["callable"]


def test_the_install_carries_the_sample_attribution_and_nothing_but_the_library(installed):
    assert (installed / "xai_core" / "assets" / "samples" / "ATTRIBUTION.md").is_file()
    assert not (installed / "tests").exists() and not (installed / "ui").exists()
