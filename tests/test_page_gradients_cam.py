"""The Gradients and CAM page: a grid of targets × methods and its downloads."""
from pathlib import Path

from streamlit.testing.v1 import AppTest

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "1_Gradients_and_CAM.py")


def test_grid_of_two_targets_by_three_methods_with_downloads():
    at = AppTest.from_file(PAGE, default_timeout=180)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    methods, targets = at.multiselect
    assert len(targets.value) == 1  # the predicted class by default
    methods.set_value(["saliency", "cam", "faster_scorecam"])
    targets.set_value([targets.value[0], (targets.value[0] + 1) % 8])
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    assert not at.warning and not at.error, [w.value for w in at.warning] + [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 1
    assert len(at.get("download_button")) == 2
    layer = next(s for s in at.selectbox if s.label == "CAM layer")
    assert layer.value == "features.block4"  # the embedded model's default CAM layer
