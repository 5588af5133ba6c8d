"""Command line: ``python -m xai_core SUBCOMMAND ...`` or the ``xai-lab`` console script.

Layout (no import cycle): ``common`` holds what subcommands share; ``models``, ``dataset``,
``explain``, ``rig`` and ``invert`` each register their subcommands and import only
``common`` (and the library); ``entry`` builds the parser from them and runs ``main``.
The library never imports this package.
"""
from .entry import main

__all__ = ["main"]
