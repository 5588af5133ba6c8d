"""XAI Lab core: explanation methods for image classifiers, usable without the UI.

In a notebook::

    from xai_core import explain, list_methods, load_image, load_model

    model = load_model("embedded")                 # or "resnet18", or a checkpoint
    image = load_image("photo.png")
    [gradcam] = explain(model, image, "gradcam")   # the predicted class by default
    gradcam.map                                    # H×W numpy array, model input resolution
    [m.name for m in list_methods("cam")]

``explain`` returns one ``Explanation`` per target; ``LoadedModel`` carries the module with its
preprocessing and class names; every error a user can cause is an ``XAIError`` with a readable
message. ``colorize``, ``overlay`` and ``png_bytes`` (``xai_core.render``) turn maps into colour
images, overlays over the input and PNG files.
"""
from .errors import XAIError
from .imageio import load_image
from .methods import Explanation, Method, Param, explain, get_method, list_methods
from .model_handle import LoadedModel
from .models import list_models, load_model
from .render import colorize, overlay, png_bytes

__version__ = "0.2.0"

__all__ = ["Explanation", "LoadedModel", "Method", "Param", "XAIError", "colorize", "explain", "get_method",
           "list_methods", "list_models", "load_image", "load_model", "overlay", "png_bytes"]
