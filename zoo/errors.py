"""The base of every error posezoo raises on purpose, and two errors more than one layer uses.

Each module derives its own errors from `PosezooError` (RecipeError, SourceError, LoaderError, ...):
the message says what is wrong and what to do; `posezoo` prints it and exits 2 (a ConversionError
exits 1). Any other exception is a bug in posezoo: exit 3, the traceback in a file. This module
imports nothing, so every layer can use it, and the sandbox's child before it restricts itself.
"""


class PosezooError(Exception):
    """Bad input, a missing or broken file, or a step that cannot be done: the message explains it."""


class UsageError(PosezooError):
    """Options that are missing or cannot go together, or a request posezoo cannot carry out."""


class RunError(PosezooError, RuntimeError):
    """A model file no runtime can load or run (zoo/runtime.py). Also a RuntimeError: the parity
    gate rejects an artifact on that, as on the TFLite interpreter's own RuntimeError."""
