"""Evaluate explanations over a dataset: image sources with ground truth, the batched runner, its
statistics, and the multi-process (torchrun) session.

    from xai_core import load_model
    from xai_core.evaluation import run_evaluation, write_csv

    model = load_model("embedded")
    result = run_evaluation(model, "embedded:5", {"gradcam": {}, "saliency": {}},
                            {"pointing_game": {}, "deletion": {"steps": 16}}, n=256)
    result.summary      # one dict per method × metric: mean, ci_low, ci_high, n, higher_is_better
    write_csv(result.rows, "results.csv")
"""
from .runner import (ROW_COLUMNS, EvaluationResult, MeanCurve, merge_results, result_json, run_evaluation,
                     write_csv, write_json)
from .sources import GROUND_TRUTHS, Batch, EvaluationSource, open_source
from .statistics import bootstrap_interval, summarise

__all__ = ["Batch", "EvaluationResult", "EvaluationSource", "MeanCurve", "GROUND_TRUTHS", "ROW_COLUMNS",
           "bootstrap_interval", "merge_results", "open_source", "result_json", "run_evaluation", "summarise",
           "write_csv", "write_json"]
