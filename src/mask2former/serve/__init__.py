"""``mask2former serve``: an HTTP API and a web page for segmenting images, around one model with dynamic batching.

Needs the ``serve`` extra (``pip install 'mask2former[serve]'``: Starlette, uvicorn, python-multipart); importing
this package without it raises an ImportError that says so. ``import mask2former`` never imports it.

- :mod:`~mask2former.serve.inputs`: query options, uploads and image decoding, checked (4xx errors).
- :mod:`~mask2former.serve.batching`: requests that arrive together share one model call.
- :mod:`~mask2former.serve.app`: the routes (``/``, ``/healthz``, ``/v1/model``, ``/v1/stats``, ``/v1/segment``,
  ``/v1/overlay``); ``page.html`` is the web page.
- :mod:`~mask2former.serve.server`: binds the socket and runs uvicorn.
"""

from __future__ import annotations

try:
    import python_multipart  # noqa: F401
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as error:
    raise ImportError(f"mask2former serve needs the server packages ({error.name} is not installed): "
                      f"pip install 'mask2former[serve]'") from error

from mask2former.serve.app import ServeOptions, create_app, segments_document
from mask2former.serve.server import bind, serve

__all__ = ["ServeOptions", "bind", "create_app", "segments_document", "serve"]
