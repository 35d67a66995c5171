"""Run the application: bind the listening socket (so that port 0 picks a free port and the real one can be shown),
then hand it to uvicorn, which serves until Ctrl-C or SIGTERM."""

from __future__ import annotations

import socket
from collections.abc import Callable

from mask2former.predict import Predictor
from mask2former.serve.app import ServeOptions, create_app

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one). Raises ``OSError`` when that is impossible
    (the port is taken, the address is not this machine's)."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family)


def serve(predictor: Predictor, options: ServeOptions, sock: socket.socket, *,
          announce: Callable[[str], None] = print, log_level: str = "info") -> None:
    """Serve ``predictor`` on the bound socket ``sock`` until the process is told to stop."""
    import uvicorn

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    announce(f"mask2former serve: {options.model_name} ({len(predictor.id2label)} labels) on {predictor.device}, "
             f"{str(predictor.dtype).removeprefix('torch.')}, batches of up to {options.max_batch}\n"
             f"  web page: http://{shown}:{port}/   API: http://{shown}:{port}/v1/segment (docs/serve.md)   "
             f"Ctrl-C stops")
    if host not in LOOPBACK:
        announce(f"  note: listening on {host}, not only on this machine: whoever can reach it can use the model.")
    config = uvicorn.Config(create_app(predictor, options), log_level=log_level, lifespan="on",
                            timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])
