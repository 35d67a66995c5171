"""The HTTP application: the routes of ``mask2former serve``, its JSON errors, and the way from a request to a batch.

``POST /v1/segment`` and ``POST /v1/overlay`` check the query, read the upload (at most ``max_upload_bytes``, in
memory), decode the image (at most ``max_pixels``) in a worker thread, and hand it to the :class:`Batcher`, which
runs the one model. Images join a batch only with images of the same size and the same settings: a batch pads its
images to one size, which would change the answer, so every request gets exactly what ``predict`` gives.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
from collections.abc import Hashable
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from mask2former.predict import TASKS, Prediction, Predictor, draw_prediction
from mask2former.serve.batching import Batcher, QueueFull
from mask2former.serve.inputs import RequestError, Settings, decode_image, image_bytes, parse_query, read_body

log = logging.getLogger("mask2former.serve")

ENDPOINTS = "GET / (the web page), GET /healthz, GET /v1/model, GET /v1/stats, POST /v1/segment, POST /v1/overlay"
# The page loads nothing from elsewhere; the header makes the browser hold it to that.
PAGE_POLICY = ("default-src 'none'; connect-src 'self'; img-src 'self' data: blob:; style-src 'unsafe-inline'; "
               "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")


@dataclass(frozen=True)
class ServeOptions:
    """Server settings: batching (``max_batch`` images per call, waiting at most ``max_wait_ms`` for them), the
    limits on uploads (bytes of the request body, pixels of the image) and on waiting requests (``max_queue``),
    and the model's name as ``/v1/model`` reports it."""

    max_batch: int = 8
    max_wait_ms: float = 10.0
    max_upload_bytes: int = 20_000_000
    max_pixels: int = 50_000_000
    max_queue: int = 64
    model_name: str = "bundled demo model"


def segments_document(prediction: Prediction, image_name: str | None) -> dict[str, Any]:
    """The JSON of one segmented image, as ``predict`` writes it (``image`` is the uploaded file's name, if any)."""
    return {"image": image_name, "height": prediction.height, "width": prediction.width, "task": prediction.task,
            "segments": prediction.segments}


def _png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def create_app(predictor: Predictor, options: ServeOptions) -> Starlette:
    """The application around ``predictor`` (its model and processor; its task and thresholds are the defaults
    that a request's query can change)."""
    defaults = Settings(predictor.task, predictor.threshold, predictor.mask_threshold,
                        predictor.overlap_mask_area_threshold)

    def run(key: Hashable, images: list[Image.Image]) -> list[Prediction]:
        settings, _size = key
        view = Predictor(predictor.model, predictor.processor, settings.task, threshold=settings.threshold,
                         mask_threshold=settings.mask_threshold,
                         overlap_mask_area_threshold=settings.overlap_threshold,
                         label_ids_to_fuse=predictor.label_ids_to_fuse)
        return view(images)

    batcher = Batcher(run, max_batch=options.max_batch, max_wait_s=options.max_wait_ms / 1000,
                      max_queue=options.max_queue)
    page = resources.files("mask2former.serve").joinpath("page.html").read_text(encoding="utf-8")

    async def segment(request: Request, extra: dict[str, str]) -> tuple[Image.Image, str | None, dict, Any, int]:
        settings, flags = parse_query(request.query_params, defaults, extra)
        body = await read_body(request.stream(), request.headers.get("content-length"), options.max_upload_bytes)
        data, name = image_bytes(body, request.headers.get("content-type", ""))
        image = await run_in_threadpool(decode_image, data, options.max_pixels)
        try:
            prediction, batch_size = await batcher.submit((settings, image.size), image)
        except QueueFull as error:
            raise RequestError(503, f"the server is busy: {error} Try again in a moment.") from None
        except ValueError as error:  # an image the processor cannot take, e.g. too thin to resize (1 x 5000)
            raise RequestError(422, f"the model cannot segment this {image.width} x {image.height} image: "
                                    f"{error}.") from None
        return image, name, flags, prediction, batch_size

    async def segment_route(request: Request) -> Response:
        image, name, flags, prediction, batch_size = await segment(request, {"overlay": "flag"})
        document = segments_document(prediction, name)
        if flags.get("overlay"):
            png = await run_in_threadpool(lambda: _png(draw_prediction(image, prediction)))
            document["overlay"] = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        return JSONResponse(document, headers={"X-Batch-Size": str(batch_size)})

    async def overlay_route(request: Request) -> Response:
        image, _name, flags, prediction, batch_size = await segment(request, {"side_by_side": "flag",
                                                                             "alpha": "fraction"})
        png = await run_in_threadpool(lambda: _png(draw_prediction(
            image, prediction, side_by_side=flags.get("side_by_side", False), alpha=flags.get("alpha", 0.6))))
        return Response(png, media_type="image/png", headers={"X-Batch-Size": str(batch_size)})

    async def model_route(request: Request) -> Response:
        model = predictor.model
        return JSONResponse({
            "model": options.model_name,
            "labels": {str(k): v for k, v in sorted(predictor.id2label.items())},
            "num_labels": len(predictor.id2label),
            "num_queries": int(model.config.num_queries),
            "parameters": sum(p.numel() for p in model.parameters()),
            "image_size": predictor.processor.to_dict().get("size"),
            "device": str(predictor.device),
            "dtype": str(predictor.dtype).removeprefix("torch."),
            "tasks": list(TASKS),
            "defaults": asdict(defaults),
            "limits": {"max_upload_bytes": options.max_upload_bytes, "max_pixels": options.max_pixels,
                       "max_queue": options.max_queue},
            "batching": {"max_batch": options.max_batch, "max_wait_ms": options.max_wait_ms},
        })

    async def stats_route(request: Request) -> Response:
        return JSONResponse({**batcher.stats.as_dict(), "waiting": batcher.waiting})

    async def health_route(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def page_route(request: Request) -> Response:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    async def request_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, RequestError)
        return JSONResponse({"error": error.message, "status": error.status}, status_code=error.status)

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        where = f"{request.method} {request.url.path}"
        if error.status_code == 404:
            message = f"no such endpoint: {where}; there are {ENDPOINTS}."
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow", "another method")
            message = f"{where} is not allowed; {request.url.path} takes {allowed}."
        else:
            message = f"{where}: {error.detail}"
        return JSONResponse({"error": message, "status": error.status_code}, status_code=error.status_code,
                            headers=error.headers)

    async def server_error(request: Request, error: Exception) -> Response:
        log.error("%s %s failed", request.method, request.url.path, exc_info=error)
        return JSONResponse({"error": f"the server failed on this request ({type(error).__name__}: {error}); the "
                                      f"server log has the details.", "status": 500}, status_code=500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        batcher.start()
        yield
        await batcher.stop()

    routes = [
        Route("/", page_route, methods=["GET"]),
        Route("/healthz", health_route, methods=["GET"]),
        Route("/v1/model", model_route, methods=["GET"]),
        Route("/v1/stats", stats_route, methods=["GET"]),
        Route("/v1/segment", segment_route, methods=["POST"]),
        Route("/v1/overlay", overlay_route, methods=["POST"]),
    ]
    handlers = {RequestError: request_error, HTTPException: http_error, Exception: server_error}
    app = Starlette(routes=routes, exception_handlers=handlers, lifespan=lifespan)
    app.state.batcher = batcher
    return app
