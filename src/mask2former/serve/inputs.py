"""What a request asks for, checked: query options, the uploaded bytes (raw or multipart) and the image in them.

Every problem raises :class:`RequestError` with an HTTP status and a message that says what is wrong and what to do.
Uploads stay in memory: nothing here writes to disk.
"""

from __future__ import annotations

import io
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from python_multipart.multipart import MultipartParser, parse_options_header

from mask2former.preprocess.read import oriented_rgb
from mask2former.predict import TASKS


class RequestError(Exception):
    """A request the server refuses: ``status`` (4xx) and a message for the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Settings:
    """Post-processing settings of one request; requests batch together only when these are equal."""

    task: str = "panoptic"
    threshold: float = 0.5
    mask_threshold: float = 0.5
    overlap_threshold: float = 0.8


_THRESHOLDS = ("threshold", "mask_threshold", "overlap_threshold")
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _fraction(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise RequestError(400, f"{name}={text!r} is not a number; give a value between 0 and 1.") from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise RequestError(400, f"{name}={text} is out of range; give a value between 0 and 1.")
    return value


def parse_query(query: Mapping[str, str], defaults: Settings, extra: Mapping[str, str]) -> tuple[Settings, dict]:
    """Settings (``task`` and the thresholds, else ``defaults``) and the endpoint's ``extra`` options.

    ``extra`` maps each further option name to its kind, ``flag`` (true/false, 1/0, yes/no) or ``fraction``
    (a number in [0, 1]); options not given are left out of the returned dict. Unknown names are refused, so a
    misspelt option never silently does nothing.
    """
    known = ("task", *_THRESHOLDS, *extra)
    unknown = [name for name in query if name not in known]
    if unknown:
        raise RequestError(400, f"unknown query parameter {unknown[0]!r}; this endpoint takes {', '.join(known)}.")
    task = query.get("task", defaults.task)
    if task not in TASKS:
        raise RequestError(400, f"unknown task {task!r}; choose one of {', '.join(TASKS)}.")
    values = {name: _fraction(name, query[name]) if name in query else getattr(defaults, name)
              for name in _THRESHOLDS}
    options: dict = {}
    for name, kind in extra.items():
        if name not in query:
            continue
        if kind == "flag":
            flag = _FLAGS.get(query[name].lower())
            if flag is None:
                raise RequestError(400, f"{name}={query[name]!r}: give true or false (or 1 or 0).")
            options[name] = flag
        else:
            options[name] = _fraction(name, query[name])
    return Settings(task, **values), options


async def read_body(chunks: AsyncIterator[bytes], declared_length: str | None, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to pass ``limit`` bytes (from the
    Content-Length header, or while it streams in)."""
    too_large = (f"the upload is over this server's limit of {limit:,} bytes ({limit / 1e6:g} MB); send a smaller "
                 f"file, or start the server with a larger --max-upload-mb.")
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise RequestError(413, f"{too_large} (Content-Length: {int(declared_length):,})")
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > limit:
            raise RequestError(413, too_large)
    return bytes(body)


def image_bytes(body: bytes, content_type: str) -> tuple[bytes, str | None]:
    """The uploaded file and its name (None for a raw body): the body itself, or the first file part of a
    ``multipart/form-data`` body (the part named ``image`` when there are several)."""
    if not content_type.lower().startswith("multipart/form-data"):
        if not body:
            raise RequestError(400, "the request has no image: send the image file as the request body or as a "
                                    "multipart/form-data upload (field 'image').")
        return body, None
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise RequestError(400, "multipart/form-data without a boundary in its Content-Type header.")
    parts = _multipart_files(body, boundary)
    if not parts:
        raise RequestError(400, "the multipart upload holds no file; send the image in a file field named 'image' "
                                "(curl -F image=@photo.jpg).")
    _field, filename, data = next((p for p in parts if p[0] == "image"), parts[0])
    if not data:
        raise RequestError(400, f"the uploaded file {filename!r} is empty.")
    return data, filename


def _multipart_files(body: bytes, boundary: bytes) -> list[tuple[str, str, bytes]]:
    """(field name, file name, content) of every part of a multipart body that carries a file name."""
    parts: list[tuple[str, str, bytes]] = []
    state: dict = {}

    def on_part_begin() -> None:
        state.update(headers={}, field=b"", value=b"", data=[])

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    def on_part_end() -> None:
        _, params = parse_options_header(state["headers"].get(b"content-disposition", b""))
        if b"filename" in params:
            parts.append((params.get(b"name", b"").decode("utf-8", "replace"),
                          params[b"filename"].decode("utf-8", "replace"), b"".join(state["data"])))

    callbacks = {"on_part_begin": on_part_begin, "on_header_field": on_header_field,
                 "on_header_value": on_header_value, "on_header_end": on_header_end, "on_part_data": on_part_data,
                 "on_part_end": on_part_end}
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except Exception as error:  # python-multipart's MultipartParseError and friends
        raise RequestError(400, f"the multipart/form-data body cannot be parsed ({error}).") from None
    return parts


def decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """The uploaded bytes as an RGB image (the first frame of an animation), fully decoded in memory.

    Refuses bytes that are no image format Pillow knows (415), images with more than ``max_pixels`` pixels before
    decoding them (413: decompression bombs), and data that is corrupt or cut short (422).
    """
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestError(415, f"the upload ({len(data):,} bytes) is not an image: no image format (JPEG, PNG, "
                                f"WebP, BMP, GIF, TIFF, ...) recognises it.") from None
    except Image.DecompressionBombError as error:
        raise RequestError(413, f"the image has too many pixels to decode safely, over this server's limit of "
                                f"{max_pixels:,} pixels (Pillow: {error})") from None
    except Exception as error:  # a header that names a format but cannot be read
        raise RequestError(422, f"the image is corrupt: its header cannot be read ({error}).") from None
    with image:
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise RequestError(413, f"the image is {image.width} x {image.height} = {pixels:,} pixels, over this "
                                    f"server's limit of {max_pixels:,} pixels; send a smaller image, or start the "
                                    f"server with a larger --max-pixels.")
        try:
            image.load()
            return oriented_rgb(image)
        except Exception as error:  # OSError "image file is truncated", SyntaxError, zlib and struct errors, ...
            raise RequestError(422, f"the {image.format} image ({image.width} x {image.height}) is corrupt or "
                                    f"truncated: {error}.") from None
