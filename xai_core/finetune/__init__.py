"""Saliency-guided fine-tuning (issue 13): differentiable Grad-CAM/CAM losses and the training loop."""
from .losses import LOSS_FORMS, SALIENCY_MAPS, localisation_terms, saliency_loss, saliency_maps
from .training import EpochRecord, FinetuneConfig, FinetuneResult, finetune, finetune_step, train_epoch

__all__ = ["LOSS_FORMS", "SALIENCY_MAPS", "EpochRecord", "FinetuneConfig", "FinetuneResult", "finetune",
           "finetune_step", "localisation_terms", "saliency_loss", "saliency_maps", "train_epoch"]
