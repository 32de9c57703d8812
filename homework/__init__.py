"""
Homework 1: low-memory training and inference with BigNet.

Every module is an attribute of the package, as the course's grader reaches them
(`homework.lora.load(path)`), and is imported only when first used: a file with a mistake in it
breaks itself, not the other parts or the tools.
"""

import importlib


def __getattr__(name: str):
    # Called only for a name the package does not have yet: import the submodule of that name.
    if not name.startswith("_"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":  # a module that exists but imports something missing
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
