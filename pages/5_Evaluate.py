"""Evaluate explanations over a dataset: every chosen method scored with every chosen metric on many
images, each explained for its true class, with the sidebar's model.

Methods and metrics are the registries' (``xai_core.methods``, ``xai_core.metrics``), with their
``Param`` widgets. The evaluation runs a batch at a time through the result store
(``ui/evaluation_session.py``): Stop keeps the batches done, Run continues from there, and a rerun
that needs no new computation is instant. Tables and figures are ``ui/evaluation_figures.py``.
"""
import json

import numpy as np
import streamlit as st

from ui.cache import progress_bar
from ui.data_folders import folder_picker
from ui.evaluation_figures import (DISTRIBUTION_KINDS, direction, metric_curves_figure, per_image_frame, rows_frame,
                                   score_distributions, summary_frame)
from ui.evaluation_session import (EvaluationProgress, EvaluationRequest, evaluate, explore, explored, extremes,
                                   metric_param_widgets, named_params, opened_source, stored, thumbnails)
from ui.params import param_widgets
from ui.provenance import provenance
from ui.sidebar import sidebar
from ui.text import as_text
from ui.url_state import stop_page
from ui.views import show_figure, show_table
from xai_core.errors import XAIError
from xai_core.evaluation import GROUND_TRUTHS, result_json
from xai_core.evaluation.sources import EMBEDDED_PREFIX
from xai_core.methods import METHODS
from xai_core.metrics import FAMILIES, METRICS

KEY = "evaluate"
KEEP = "session"
EMBEDDED_IMAGES, FOLDER_IMAGES = "Embedded dataset", "Folder"
DEFAULT_METHODS = ("saliency", "gradcam")
DEFAULT_METRICS = ("pointing_game", "energy_pointing_game", "relevance_rank_accuracy")  # ground truth only: fast
DEFAULT_N, DEFAULT_BATCH = 32, 16
GALLERY_K = 4
GALLERY_PX = 150
PARAMETER_COLUMNS = 3
CURVE_COLUMNS = 2
PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
NUMBER = st.column_config.NumberColumn(format="%.4f")
FOLDER_HELP = ("A folder written by `dataset-export` (labels.csv and masks), or an ImageFolder (one folder per "
               "class) with boxes.csv: path,x0,y0,x1,y1 in pixels of the original image, one row per box.")

selection = sidebar()
model = selection.model
st.title("Evaluate explanations")
st.caption(f"Score explanation methods with metrics over many images, each explained for its true class by the "
           f"sidebar's model ({as_text(model.name)}).")
message = explored()
if message:
    st.toast(f"{as_text(message)} is now the sidebar's image and target: every explorer page shows it.")

# ----------------------------------------------------------------------------- what to evaluate
where, which, count, batch, truth = st.columns([1.3, 1.4, 0.8, 0.8, 1])
images = where.radio("Image source", (EMBEDDED_IMAGES, FOLDER_IMAGES), horizontal=True, key=f"{KEY}.images",
                     persist_state=KEEP)
if images == EMBEDDED_IMAGES:
    seed = which.number_input("Dataset seed", 0, 2**31 - 1, 0, key=f"{KEY}.seed", persist_state=KEEP,
                              help="A fresh split of the embedded dataset: image i is the sidebar's sample "
                                   "(this seed, index i).")
    source = f"{EMBEDDED_PREFIX}{int(seed)}"
else:
    folder = folder_picker(which, "Folder", f"{KEY}.folder", FOLDER_HELP)
    source = "" if folder is None else str(folder)
n = count.number_input("Number of images", 1, 1_000_000, DEFAULT_N, key=f"{KEY}.n", persist_state=KEEP,
                       help="A folder gives this many images evenly spaced over its sorted list.")
batch_size = batch.number_input("Batch size", 1, 1024, DEFAULT_BATCH, key=f"{KEY}.batch_size", persist_state=KEEP,
                                help="Images explained together; Stop keeps the batches done.")
ground_truth = truth.radio("Ground truth", GROUND_TRUTHS, horizontal=True, key=f"{KEY}.ground_truth",
                           persist_state=KEEP, help="The whole object, or its discriminative part (the badge "
                                                    "of the two hexagon classes; embedded data and exports).")

method_column, metric_column = st.columns(2)
methods = method_column.multiselect("Methods", list(METHODS), default=list(DEFAULT_METHODS), key=f"{KEY}.methods",
                                    persist_state=KEEP, format_func=lambda name: METHODS[name].label)
metrics = metric_column.multiselect(
    "Metrics", list(METRICS), default=list(DEFAULT_METRICS), key=f"{KEY}.metrics", persist_state=KEEP,
    format_func=lambda name: f"{METRICS[name].label} {direction(METRICS[name].higher_is_better)}",
    help="↑: higher is better, ↓: lower is. Faithfulness and sanity metrics re-run the model many times per "
         "image: expect seconds per image.")

# One expander per chosen method or metric with parameters; each gets only its own values.
method_params = {name: {} for name in methods}
metric_params = {name: {} for name in metrics}
draw_methods = (lambda spec: param_widgets(spec, model, key_prefix=f"{KEY}.method"), method_params)
draw_metrics = (lambda spec: metric_param_widgets(spec, model, key_prefix=f"{KEY}.metric"), metric_params)
panels = ([(METHODS[m], *draw_methods) for m in methods if METHODS[m].params]
          + [(METRICS[m], *draw_metrics) for m in metrics if METRICS[m].params])
slots = st.columns(PARAMETER_COLUMNS) if panels else []
for i, (spec, draw, chosen) in enumerate(panels):
    with slots[i % PARAMETER_COLUMNS].expander(f"{spec.label} parameters"):
        chosen[spec.name] = draw(spec)

if not methods or not metrics:
    st.info("Choose at least one method and one metric.")
    stop_page()
if not source:  # no folder offered: the picker said so
    stop_page()

request = EvaluationRequest(source, ground_truth, int(n), int(batch_size), named_params(method_params),
                            named_params(metric_params))
run_column, stop_column, _ = st.columns([1, 1, 8])
run = run_column.button("Run", type="primary", key=f"{KEY}.run")
# Clicking Stop reruns the script, which Streamlit does by raising from the next progress update. (Not
# disabled between runs: Streamlit discards the click of a widget that the rerun draws disabled.)
stop = stop_column.button("Stop", key=f"{KEY}.stop", help="Stops the run; the batches done are kept.")
bar = progress_bar("Evaluating") if run else None
try:
    if run:
        result, done = evaluate(model, selection.model_key, request, EvaluationProgress(bar, request.n)), request.n
    else:
        result, done = stored(model, selection.model_key, request)
except XAIError as err:
    st.error(as_text(str(err)))
    stop_page()
finally:
    if bar is not None:
        bar.done()
if result is None:
    st.info(f"Press Run to evaluate {len(methods)} method(s) with {len(metrics)} metric(s) on {request.n} images.")
    stop_page()
if done < request.n:
    st.warning(("Stopped. " if stop else "") + f"These results are for {done} of the {request.n} images; "
               "Run continues from there.")
labels = {name: METHODS[name].label for name in result.methods} | {name: METRICS[name].label for name in result.metrics}
prov = provenance(selection, method=", ".join(labels[m] for m in result.methods), image=f"{source}: {done} images",
                  image_hash="(one per image)", target="each image's true class",
                  metrics=[labels[m] for m in result.metrics], params={
                      "ground truth": ground_truth, "batch size": batch_size,
                      **{f"{m}.{k}": v for m, chosen in (method_params | metric_params).items() for k, v in chosen.items()}})

# ----------------------------------------------------------------------------- results
st.subheader("Methods × metrics")
show_table(summary_frame(result.summary, labels), "Evaluation methods by metrics", prov, hide_index=True,
           column_config={"Mean": NUMBER, "95% CI low": NUMBER, "95% CI high": NUMBER})
st.caption("Mean over the images where the metric is defined (n; an empty mask or a constant map has no score) "
           "and its 95 % percentile bootstrap interval (2,000 resamples, seeded).")

st.subheader("Per-image scores")
kind = st.radio("Plot", DISTRIBUTION_KINDS, horizontal=True, key=f"{KEY}.distribution", persist_state=KEEP)
show_figure(score_distributions(result.rows, result.methods, [METRICS[m] for m in result.metrics], labels, kind),
            "Evaluation per-image score distributions", prov, **PLOT)

curve_metrics = [m for m in result.metrics if any((method, m) in result.curves for method in result.methods)]
if curve_metrics:
    st.subheader("Curves")
    for start in range(0, len(curve_metrics), CURVE_COLUMNS):
        for column, metric in zip(st.columns(CURVE_COLUMNS), curve_metrics[start:start + CURVE_COLUMNS]):
            curves = {method: result.curves[(method, metric)] for method in result.methods
                      if (method, metric) in result.curves}
            show_figure(metric_curves_figure(METRICS[metric], curves, labels), f"Evaluation {labels[metric]} curves",
                        prov, container=column, arrays={"x": np.asarray(next(iter(curves.values())).x)} | {
                            f"mean {labels[m]}": np.asarray(c.mean) for m, c in curves.items()}, **PLOT)

st.subheader("Worst and best images")
method_choice, metric_choice = st.columns(2)
shown_method = method_choice.selectbox("Method", result.methods, format_func=labels.get, key=f"{KEY}.gallery.method",
                                       persist_state=KEEP)
shown_metric = metric_choice.selectbox("Metric", result.metrics, format_func=labels.get, key=f"{KEY}.gallery.metric",
                                       persist_state=KEEP)
worst, best = extremes(result.rows, shown_method, shown_metric, GALLERY_K, METRICS[shown_metric].higher_is_better)
try:
    pictures = thumbnails(model, selection.model_key, request, shown_method, worst + best)
    opened = opened_source(model, selection.model_key, request.source, request.ground_truth)
except XAIError as err:
    st.error(as_text(str(err)))
else:
    st.caption(f"{labels[shown_method]}'s map for the true class over each image; the score under it. "
               "Explore makes the image the sidebar's, for the explorer pages.")
    for title, rows, shown in (("Worst", worst, pictures[:len(worst)]), ("Best", best, pictures[len(worst):])):
        st.markdown(f"**{title}**")
        for i, (column, row, picture) in enumerate(zip(st.columns(GALLERY_K), rows, shown)):
            class_name = model.class_label(row["label"])
            column.image(picture, caption=f"{as_text(row['image'])} · {as_text(class_name)} · "
                                          f"score {row['score']:.3g}",
                         width=GALLERY_PX)
            column.button("Explore", key=f"{KEY}.explore.{title}.{i}", on_click=explore, args=(opened, row, class_name))
    if not worst:
        st.info("No image has a score for this method and metric.")
    elif worst[0]["score"] == best[0]["score"]:
        st.caption("Every image has the same score here: worst and best differ only by their image index.")

st.subheader("Downloads")
with st.expander("Per-image scores (table)"):
    show_table(per_image_frame(result.rows, labels), "Evaluation per-image scores", prov, hide_index=True)
csv_column, json_column = st.columns(2)
csv_column.download_button("Per-image scores (CSV)", lambda: rows_frame(result.rows).to_csv(index=False, na_rep="nan"),
                           file_name="evaluation.csv", mime="text/csv", on_click="ignore", key=f"{KEY}.csv")
json_column.download_button("Everything (JSON: summary, per-image rows, mean curves)",
                            lambda: json.dumps(result_json(result)), file_name="evaluation.json",
                            mime="application/json", on_click="ignore", key=f"{KEY}.json")

with st.expander("About these metrics"):
    for name in result.metrics:
        spec = METRICS[name]
        st.markdown(f"**{spec.label}** ({FAMILIES[spec.family]}, {'higher' if spec.higher_is_better else 'lower'} "
                    f"is better) — {spec.description}" + (f" *Reference: {spec.reference}.*" if spec.reference
                                                           else ""))
