"""What-if latency: one edit on the embedded model, driven through the page under AppTest, and the same
per-edit work on a torchvision ResNet-50 (random weights) called as the page calls it.

    python bench/bench_whatif.py [--edits 5]

Embedded: the page is run once (maps and k curves cached), then each edit is an "Add box" click and its
rerun; the time of a rerun with no change is measured in the same process, so the edit's own cost is the
difference. Both models, the page's per-edit calls: apply_edits + prediction_change (one forward of two images),
then also the edited image's Grad-CAM (the original's map is cached). ResNet-50: 224 px, CPU. Times are best-of; on a shared
machine compare the ratios measured in one run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.timing import best_time  # noqa: E402
from xai_core.edits import Box, Edit, apply_edits, prediction_change  # noqa: E402
from xai_core.engine import Engine  # noqa: E402
from xai_core.methods import explain  # noqa: E402
from xai_core.models import build_random  # noqa: E402


def page_edit_times(edits: int) -> tuple[float, float]:
    """(best rerun with no change, best rerun after an edit) of the What-if page, seconds."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "9_What_if.py"), default_timeout=120)
    at.run()
    idle, edit = float("inf"), float("inf")
    for i in range(edits):
        start = time.perf_counter()
        at.run()
        idle = min(idle, time.perf_counter() - start)
        at.number_input(key="whatif.box_x1").set_value(10 + 4 * i)
        start = time.perf_counter()
        at.button(key="whatif.add_box").click().run()
        edit = min(edit, time.perf_counter() - start)
        assert not at.exception, [e.message for e in at.exception]
    return idle, edit


def core_edit_times(name: str, repeats: int) -> tuple[float, float]:
    """(the edit's prediction table: apply_edits + prediction_change, the same plus the edited image's
    Grad-CAM), best seconds."""
    model = build_random(name, device="cpu")
    x = torch.randn(3, model.input_size, model.input_size)
    engine = Engine("cpu")
    target = int(model.module(x[None]).argmax())
    edit = [Edit(Box(4, 4, model.input_size // 2, model.input_size // 2), replacement="blur")]

    def table():
        edited = apply_edits(model, x, edit)
        prediction_change(model, x, edited)
        return edited

    def with_map():
        explain(model, table(), "gradcam", [target], engine=engine)

    device = torch.device("cpu")
    return best_time(table, repeats, device), best_time(with_map, repeats, device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=5)
    args = parser.parse_args()
    idle, edit = page_edit_times(args.edits)
    rows = {name: core_edit_times(name, args.edits) for name in ("embedded", "resnet50")}
    print(f"torch threads: {torch.get_num_threads()}")
    print("| what | seconds (best) |")
    print("|---|---|")
    print(f"| embedded, page rerun with no change (AppTest) | {idle:.3f} |")
    print(f"| embedded, page rerun after one edit (AppTest) | {edit:.3f} |")
    print(f"| embedded, the edit's own cost (difference) | {edit - idle:.3f} |")
    for name, (table, with_map) in rows.items():
        print(f"| {name}, edit + prediction table (one forward of 2 images) | {table:.3f} |")
        print(f"| {name}, the same + the edited image's Grad-CAM | {with_map:.3f} |")


if __name__ == "__main__":
    main()
