"""Reinforced Integrated Gradients (RIG; Mazini Rodrigues, Boutry, Najman — "Gradients Intégrés
Renforcés", English version GAD, arXiv 2401.14434).

The paper's three steps, one module each:

1. ``targets``: two classes A, B. On the training images (``data``), take the classifier's
   pre-softmax logits; for images of A subtract α from the *B* logit, for images of B subtract
   α from the *A* logit, leave every other logit unchanged (§4.1: "modifié les probabilités non
   normalisées d'être un chien sur les échantillons D_chat en soustrayant α_chat ... α_dog des
   probabilités d'être un chat des échantillons D_dog").
2. ``training``: for each α, a support *regression* network: a copy initialised from the
   classifier, linear outputs, MSE against those targets, Adam (lr 4e-5, 10 epochs in the
   paper); stored on disk by ``store``. α = 0 is the classifier itself: its targets are the
   classifier's own outputs, so the copy already sits at the loss minimum — which is why the
   paper counts four support networks and five maps for α ∈ {0, 2, 4, 6, 8} (§4.3, Fig. 4, §5.1).
3. ``explain``: IG (black baseline) on every network for both classes; keep the features
   present in every map, then black that region out and read the logits of both classes
   (§5.2), against an equally large region taken from plain IG.

``evaluation`` holds the paper's accuracy table and the part-share report on the embedded
dataset; ``architectures`` runs all three steps on several models for the same pair (the paper
reports every table for two architectures); ``defaults`` every default value.
"""
from .architectures import ArchitectureRig, architecture_labels, matched_pair, rig_architectures
from .data import TrainingData, class_pair, embedded_data, folder_data, training_sets, uses_embedded_dataset
from .defaults import (DEFAULT_ALPHAS, DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_LR, DEFAULT_N,
                       DEFAULT_REPORT_N, DEFAULT_REPORT_SEED, DEFAULT_RULE, DEFAULT_SEED, DEFAULT_STEPS,
                       DEFAULT_TAU)
from .evaluation import accuracy_table, part_share_report
from .explain import RigExplanation, important_regions, occlusion_logits, rig_explain, top_region
from .targets import batched_logits, modified_targets
from .training import SupportNetworks, format_alphas, parse_alphas, train_support_networks

__all__ = [
    "ArchitectureRig", "architecture_labels", "matched_pair", "rig_architectures",
    "DEFAULT_ALPHAS", "DEFAULT_BATCH_SIZE", "DEFAULT_EPOCHS", "DEFAULT_LR", "DEFAULT_N", "DEFAULT_REPORT_N",
    "DEFAULT_REPORT_SEED", "DEFAULT_RULE", "DEFAULT_SEED", "DEFAULT_STEPS", "DEFAULT_TAU",
    "RigExplanation", "SupportNetworks", "TrainingData", "accuracy_table", "batched_logits",
    "class_pair", "embedded_data", "folder_data", "format_alphas", "important_regions", "modified_targets",
    "occlusion_logits", "parse_alphas", "part_share_report", "rig_explain", "top_region", "train_support_networks",
    "training_sets", "uses_embedded_dataset",
]
