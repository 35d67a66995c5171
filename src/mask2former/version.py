"""The package version, defined once.

``pyproject.toml`` reads ``__version__`` from here (setuptools' dynamic version), ``mask2former --version`` prints
it, and what the library saves records it under ``VERSION_KEY``: ``config.json`` of saved models, the first line of a
training run's ``log.jsonl``. Anything else that writes results (an exporter, a server's responses) should add
:func:`version_record` to them so a result can be traced to the release that made it.

This module imports nothing, so packaging tools can read it without torch.
"""

__version__ = "0.1.0"

VERSION_KEY = "mask2former_version"


def version_record() -> dict[str, str]:
    """A new ``{"mask2former_version": __version__}`` dict to merge into metadata that is saved with a result."""
    return {VERSION_KEY: __version__}
