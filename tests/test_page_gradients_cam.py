"""The Gradients and CAM page: a grid of targets × methods and its downloads."""
import json
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
    scaling = next(r for r in at.radio if r.label == "Colour scaling")
    scaling.set_value("shared per method")
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    titles = [a["text"] for a in json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["annotations"]]
    assert sum("<sub>" in t and " … " in t for t in titles) == 3  # each method's range under its column title
