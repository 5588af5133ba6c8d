"""Every RIG default, in one place: the library's signatures, the command line and page 3 read them here.

The paper's settings (§4.3): α ∈ {0, 2, 4, 6, 8}, Adam with lr 4e-5, 10 epochs. τ, the IG steps
and the embedded-dataset sizes are ours (see the README's RIG section for what they give).
"""
from ..methods.base import Param

DEFAULT_ALPHAS = (0.0, 2.0, 4.0, 6.0, 8.0)
DEFAULT_LR = 4e-5
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32
DEFAULT_SEED = 0            # of the generated training images and of the training batch order
DEFAULT_N = 256             # embedded-dataset training images
DEFAULT_TAU = 0.75          # important = attribution ≥ τ × the map's maximum
DEFAULT_STEPS = 32          # IG path points per network
DEFAULT_RULE = "gausslegendre"
DEFAULT_REPORT_SEED = 10_000  # held-out embedded images of the part-share report: a seed never trained on
DEFAULT_REPORT_N = 16

# The bounds of every RIG setting, checked by ``Param.parse`` (the one place numbers are validated):
# α shifts a logit, so it must be finite; each α > 0 is one more network copy in memory.
MAX_ALPHAS = 16
ALPHA = Param(float, 0.0, 0.0, 100.0, help="margin subtracted from the other class's logit")
TRAINING = {
    "lr": Param(float, DEFAULT_LR, 1e-8, 0.1, help="Adam learning rate of the support networks"),
    "epochs": Param(int, DEFAULT_EPOCHS, 1, 1000, help="passes over the training images"),
    "batch_size": Param(int, DEFAULT_BATCH_SIZE, 1, 4096, help="training images per step"),
    "seed": Param(int, DEFAULT_SEED, 0, 2**31 - 1, help="seed of the batch order"),
}
