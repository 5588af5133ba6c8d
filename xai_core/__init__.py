"""XAI Lab core: explanation methods for image classifiers, usable without the UI.

Typical use from a notebook::

    from xai_core.models import load_model
    from xai_core.imageio import load_image
    from xai_core.methods import explain

    model = load_model("embedded")
    x = model.preprocess(load_image("photo.png"))
    [result] = explain(model, x, "saliency", targets=[model.predict(x)[0]["index"]])
"""
__version__ = "0.1.0"
