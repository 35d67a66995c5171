"""The serve tests' shared server: one ``mask2former serve`` process with the default options."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from serve_helpers import Server, start_server, stop_server


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """One server with the default options for the serve tests (the bundled demo model, on CPU)."""
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    stop_server(running)
