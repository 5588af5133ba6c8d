"""RISE (Petsiuk et al. 2018): random masks weighted by the class probability, refining live."""
import streamlit as st
import torch

from ui.cache import cached_explain, get_engine, progress_bar
from ui.figures import heatmap_grid, line_figure, masks_figure
from ui.progressive import accumulation
from ui.sidebar import sidebar
from xai_core.errors import XAIError
from xai_core.methods.rise import (FILLS, SEED_CHUNK, SHAPES, convergence_curve, rise_progressive,
                                   sample_masks, saliency_from_sums)

PLOT = {"width": "stretch", "config": {"displayModeBar": False}}
GRID = PLOT | {"width": "content"}  # image grids keep their own width, so images keep their aspect
SHAPE_HELP = ("binary: the paper's s×s Bernoulli grid, bilinearly upsampled and randomly shifted; stripes: "
              "s vertical bands; grid: dropped rows and columns (each band kept with probability √p); "
              "noise: per-pixel Gaussian white noise around p")

selection = sidebar()
model = selection.model
st.title("RISE — randomized input sampling")
st.caption("Black-box: the model sees N randomly masked copies of the image; a pixel's saliency is the "
           "class probability averaged over the masks that kept it: S = Σ f(I ⊙ M) · M / (N · p).")

c1, c2, c3, c4 = st.columns(4)
n_masks = c1.slider("Masks N", SEED_CHUNK, 8000, 500, SEED_CHUNK,
                    help="computed in chunks; moving N down reuses them, moving it up continues")
cell = c2.slider("Grid cells per side s", 2, 32, 7, help="the paper uses s = 7 at 224 px")
p = c3.slider("Keep probability p", 0.05, 0.95, 0.5, 0.05)
seed = c4.number_input("Seed", 0, 2**31 - 1, 0)
c1, c2, c3 = st.columns(3)
shape = c1.selectbox("Mask shape", SHAPES, help=SHAPE_HELP)
fill = c2.selectbox("Fill of masked pixels", FILLS, help="black (the paper), grey = the dataset mean, "
                    "or a blurred copy of the image (σ = 10 px at 224 px)")
others = [q["index"] for q in selection.predictions if q["index"] != selection.target]
second = c3.selectbox("Second target class", range(model.num_classes), index=others[0] if others else 0,
                      format_func=model.class_label)
targets = (selection.target, int(second))
names = [model.categories[t] for t in targets]

shown = sample_masks(shape=shape, cell=cell, p=p, seed=int(seed), n=6, size=tuple(selection.x.shape[-2:]),
                     device=model.device).cpu().numpy()
st.plotly_chart(masks_figure(shown, [f"mask {i + 1}" for i in range(len(shown))]), **GRID)


def maps_figure(sums, n):
    maps = saliency_from_sums(sums, n, p)
    return heatmap_grid(selection.display_image, [list(maps)], [f"N = {n}"], names, shared_scale=False)


acc = accumulation("rise", (selection.model_key, selection.image_hash, targets, cell, p, shape, fill, int(seed)),
                   SEED_CHUNK)
live = st.empty()
if acc.n_done < n_masks:
    bar = progress_bar("RISE")
    refresh = max(1, (n_masks - acc.n_done) // SEED_CHUNK // 10)  # about ten intermediate maps
    initial = torch.from_numpy(acc.sums[-1]).to(model.device) if acc.sums else None
    try:
        for i, step in enumerate(rise_progressive(
                model, selection.x.to(model.device), targets, masks=n_masks, cell=cell, p=p, shape=shape,
                fill=fill, seed=int(seed), engine=get_engine(selection.device), step=SEED_CHUNK,
                start=acc.n_done, initial=initial), start=1):
            acc.sums.append(step.sums.cpu().numpy())
            bar(step.n_done / n_masks, f"{step.n_done} / {n_masks} masks")
            if i % refresh == 0 and step.n_done < n_masks:
                live.plotly_chart(maps_figure(acc.sums[-1], step.n_done), **GRID)
    except XAIError as err:
        st.error(str(err))
        st.stop()
    finally:
        bar.done()
live.plotly_chart(maps_figure(acc.sums_at(n_masks), n_masks), **GRID)
st.caption(f"{acc.n_done} masks accumulated for these settings in this session; any N up to that is shown "
           "without recomputing.")

counts = acc.counts(n_masks)
if len(counts) > 1:
    curve = convergence_curve([acc.sums_at(n) for n in counts], counts, p)
    st.plotly_chart(line_figure(counts, {name: curve[:, i] for i, name in enumerate(names)}, "masks n",
                                "‖map(n) − map(N)‖ / ‖map(N)‖ (mean removed)",
                                f"Convergence towards the map with N = {n_masks}"), **PLOT)

st.header("Fills and mask shapes compared")
c1, c2 = st.columns(2)
n_compare = c1.slider("Masks per map", SEED_CHUNK, 4000, min(n_masks, 1000), SEED_CHUNK)
run = c2.toggle("Compute the comparison", help="3 fills and 4 shapes: up to 6 more RISE runs (cached)")
if run:
    base = {"masks": n_compare, "cell": cell, "p": p, "seed": int(seed)}
    variants = [("fill", f, {"shape": shape, "fill": f}) for f in FILLS] + \
               [("shape", s, {"shape": s, "fill": fill}) for s in SHAPES]
    bar = progress_bar("RISE comparisons")
    try:
        results = {}
        for i, (kind, label, params) in enumerate(variants):
            results[kind, label] = cached_explain(
                model, selection.model_key, selection.image_hash, selection.x.numpy(), "rise", targets,
                tuple(sorted((base | params).items())),
                _progress=lambda f, m, i=i: bar((i + f) / len(variants), m))
    except XAIError as err:
        st.error(str(err))
        st.stop()
    finally:
        bar.done()
    for kind, labels in (("fill", FILLS), ("shape", SHAPES)):
        grid = [[results[kind, label][t][0] for label in labels] for t in range(len(targets))]
        st.plotly_chart(heatmap_grid(selection.display_image, grid, names, [f"{kind}: {x}" for x in labels],
                                     shared_scale=False), **GRID)
