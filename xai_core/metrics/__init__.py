"""Metrics of explanations: localisation against ground truth (HAGTR, MAGTR, MANGTR, pointing
games, relevance mass and rank), faithfulness (deletion, insertion) and sanity checks (cascading
randomisation), each on a batch of maps at once.

    from xai_core.metrics import METRICS, GroundTruth, MetricContext, compute

    out = compute("pointing_game", maps, GroundTruth(boxes=boxes))         # maps B×H×W, boxes B×4
    out.scores                                                              # B float64, NaN if undefined
    compute("deletion", maps, context=MetricContext(model, xs, targets, engine, "gradcam"))
"""
from .base import FAMILIES, GroundTruth, Metric, MetricContext, MetricOutput
from .registry import METRICS, compute, get_metric, list_metrics

__all__ = ["FAMILIES", "GroundTruth", "METRICS", "Metric", "MetricContext", "MetricOutput", "compute",
           "get_metric", "list_metrics"]
