"""Exceptions raised by the core.

Every error a user can cause (bad image, missing weights, wrong checkpoint, impossible
parameter, out of memory) is an ``XAIError`` whose message is one readable sentence, so the
UI and the CLI can show ``str(err)`` as is, without a traceback.
"""


class XAIError(Exception):
    """Base class: the message is meant for the end user."""


class ImageError(XAIError):
    """The input is not an image we can use (corrupt, too small, too large, unknown format)."""


class WeightsUnavailableError(XAIError):
    """Pretrained weights are neither cached nor downloadable."""


class CheckpointError(XAIError):
    """A user checkpoint cannot be loaded into the chosen architecture."""


class ParameterError(XAIError):
    """A method or command received an impossible parameter."""


class ResourceError(XAIError):
    """The computation does not fit in memory: a batched one even with a batch of one, or a single
    pass (``engine.oom_guard``), on the GPU or the CPU."""
