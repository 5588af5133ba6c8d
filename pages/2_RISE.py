"""RISE (Petsiuk et al. 2018): random masks weighted by the class probability, refining live.

The RISE widgets are drawn from ``METHODS["rise"].params`` (``ui.params``): ranges, fills and
shapes are the library's.
"""
import time

import numpy as np
import streamlit as st
import torch

from ui.cache import cached_explain, get_engine, progress_bar
from ui.convergence_figures import mark_stop
from ui.figures import heatmap_grid, line_figure, masks_figure
from ui.params import param_widgets
from ui.progressive import accumulation
from ui.provenance import provenance
from ui.sidebar import class_choices, keep_known_classes, sidebar
from ui.text import as_text
from ui.url_state import stop_page
from ui.views import show_figure, show_grid
from xai_core.errors import XAIError
from xai_core.methods import METHODS
from xai_core.methods.rise import (SEED_CHUNK, convergence_curve, rise_progressive, sample_masks, saliency_from_sums,
                                   stopping_count)

PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
GRID = PLOT | {"width": "content"}  # image grids keep their own width, so images keep their aspect
RISE = METHODS["rise"]
COMPARE_MAX_MASKS = 4000  # per map: the comparison runs RISE once per fill and per shape
KEY_PREFIX = "rise_page"
REFRESH_S = 0.5  # seconds between intermediate maps while RISE runs

selection = sidebar()
model = selection.model
st.title("RISE — randomized input sampling")
st.caption("Black-box: the model sees N randomly masked copies of the image; a pixel's saliency is the "
           "class probability averaged over the masks that kept it: S = Σ f(I ⊙ M) · M / (N · p).")

params = param_widgets(RISE, model, key_prefix=KEY_PREFIX, columns=4)
# Whole chunks, so every count is a stored prefix (the count's slider already steps by chunks).
params["masks"] = n_masks = max(SEED_CHUNK, params["masks"] // SEED_CHUNK * SEED_CHUNK)
p = params["p"]
others = [q["index"] for q in selection.predictions if q["index"] != selection.target]
classes = class_choices(model)  # kept by name across a model change
keep_known_classes(f"{KEY_PREFIX}.second", model, classes)
second = st.selectbox("Second target class", list(classes), index=others[0] if others else 0,
                      format_func=lambda c: model.class_label(classes[c]), key=f"{KEY_PREFIX}.second",
                      persist_state="session")
targets = (selection.target, classes[second])
names = [model.categories[t] for t in targets]

try:
    shown = sample_masks(shape=params["shape"], cell=params["cell"], p=p, seed=params["seed"], n=6,
                         size=tuple(selection.x.shape[-2:]), device=model.device).cpu().numpy()
except XAIError as err:
    st.error(as_text(str(err)))
    stop_page()
prov = provenance(selection, method=RISE.label, params=params, target=[model.class_label(t) for t in targets])
show_figure(masks_figure(shown, [f"mask {i + 1}" for i in range(len(shown))]), "RISE masks", prov,
            arrays={"masks": shown}, **GRID)


def maps_figure(sums, n):
    maps = saliency_from_sums(sums, n, p)
    return heatmap_grid(selection.display_image, [list(maps)], [f"N = {n}"], names, shared_scale=False)


# Every parameter but the count identifies the accumulation: a smaller N is a prefix of it. The
# tolerance does not change the masks: the page runs N and marks where a tolerance run stops.
settings = tuple(sorted((k, v) for k, v in params.items() if k not in ("masks", "tolerance")))
tolerance = params["tolerance"]
mask_params = {k: v for k, v in params.items() if k != "tolerance"}
acc = accumulation("rise", (selection.model_key, selection.image_hash, targets, settings), SEED_CHUNK)
live = st.empty()
if acc.n_done < n_masks:
    bar = progress_bar("RISE")
    # An intermediate map at most every REFRESH_S: drawing one costs as much as ~150 masks of the
    # embedded model, so a fixed count of them would double a short run.
    last_drawn = time.perf_counter()
    initial = torch.from_numpy(acc.sums[-1]).to(model.device) if acc.sums else None
    try:
        for step in rise_progressive(
                model, selection.x.to(model.device), targets, **mask_params, engine=get_engine(selection.device),
                step=SEED_CHUNK, start=acc.n_done, initial=initial):
            acc.sums.append(step.sums.cpu().numpy())
            bar(step.n_done / n_masks, f"{step.n_done} / {n_masks} masks")
            if step.n_done < n_masks and time.perf_counter() - last_drawn > REFRESH_S:
                live.plotly_chart(maps_figure(acc.sums[-1], step.n_done), **GRID)
                last_drawn = time.perf_counter()
    except XAIError as err:
        st.error(as_text(str(err)))
        stop_page()
    finally:
        bar.done()
show_grid(selection.display_image, [list(saliency_from_sums(acc.sums_at(n_masks), n_masks, p))], [f"N = {n_masks}"],
          names, "RISE maps", prov, shared_scale=False, outlines=selection.outlines, container=live,
          arrays={"targets": np.array(targets)}, **GRID)
st.caption(f"{acc.n_done} masks accumulated for these settings in this session; any N up to that is shown "
           "without recomputing.")

counts = acc.counts(n_masks)
if len(counts) > 1:
    curve = convergence_curve([acc.sums_at(n) for n in counts], counts, p)
    figure = line_figure(counts, {name: curve[:, i] for i, name in enumerate(names)}, "masks n",
                         "‖map(n) − map(N)‖ / ‖map(N)‖ (mean removed)",
                         f"Convergence towards the map with N = {n_masks}")
    if tolerance > 0:
        used = stopping_count(acc.sums_at, n_masks, p, tolerance)
        figure = mark_stop(figure, used, f"tolerance {tolerance:g} stops at {used}")
    show_figure(figure, "RISE convergence", prov,
                arrays={"masks_n": np.array(counts), "relative_distance": curve}, **PLOT)

st.header("Fills and mask shapes compared")
fills, shapes = RISE.params["fill"].choices, RISE.params["shape"].choices
count = RISE.params["masks"]
c1, c2 = st.columns(2)
n_compare = c1.slider("Masks per map", int(count.low), COMPARE_MAX_MASKS, min(n_masks, 1000), SEED_CHUNK,
                      key=f"{KEY_PREFIX}.compare_masks", persist_state="session")
run = c2.toggle("Compute the comparison", key=f"{KEY_PREFIX}.compare", persist_state="session",
                help=f"{len(fills)} fills and {len(shapes)} mask shapes: up to "
                f"{len(fills) + len(shapes) - 1} more RISE runs (cached)")
if run:
    variants = [("fill", f, {"fill": f}) for f in fills] + [("shape", s, {"shape": s}) for s in shapes]
    bar = progress_bar("RISE comparisons")
    try:
        results = {}
        for i, (kind, label, changed) in enumerate(variants):
            results[kind, label] = cached_explain(
                model, selection.model_key, selection.image_hash, selection.x.numpy(), "rise", targets,
                tuple(sorted((params | {"masks": n_compare} | changed).items())),
                _progress=lambda f, m, i=i: bar((i + f) / len(variants), m))
    except XAIError as err:
        st.error(as_text(str(err)))
        stop_page()
    finally:
        bar.done()
    for kind, labels in (("fill", fills), ("shape", shapes)):
        grid = [[results[kind, label][t][0] for label in labels] for t in range(len(targets))]
        show_grid(selection.display_image, grid, names, [f"{kind}: {x}" for x in labels], f"RISE {kind}s compared",
                  provenance(selection, method=RISE.label, params=params | {"masks": n_compare, kind: "compared"},
                             target=[model.class_label(t) for t in targets]), shared_scale=False,
                  outlines=selection.outlines, **GRID)
