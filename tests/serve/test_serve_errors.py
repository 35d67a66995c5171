"""Every bad input gets a 4xx JSON error that says what is wrong, the server stays up, and uploads never reach the
disk (its TMPDIR stays empty). Also the limits as options, and the command's own start-up errors."""

from __future__ import annotations

import io
import socket
import zlib

import pytest
from PIL import Image
from serve_helpers import multipart, start_server, stop_server

from mask2former.cli import main
from mask2former.predict import bundled_examples

EXAMPLE = bundled_examples()[0]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def corrupt_png() -> bytes:
    """A PNG whose compressed pixel data is damaged (its chunk checksum made to match, so only decoding fails)."""
    data = bytearray(png_bytes(Image.new("RGB", (64, 64), (10, 200, 30))))
    start = data.index(b"IDAT") + 4
    length = int.from_bytes(data[start - 8 : start - 4], "big")
    data[start + 2 : start + length] = bytes(length - 2)  # keep the zlib header, zero the deflate stream
    data[start + length : start + length + 4] = zlib.crc32(bytes(data[start - 4 : start + length])).to_bytes(4, "big")
    return bytes(data)


BAD_UPLOADS = {
    # name: (body, status, words the message must contain)
    "text": (b"hello, this is not a picture\n", 415, "not an image"),
    "empty": (b"", 400, "no image"),
    "truncated jpeg": (EXAMPLE.read_bytes()[:3000], 422, "corrupt or truncated"),
    "corrupt png": (corrupt_png(), 422, "corrupt or truncated"),
    "64 megapixels": (png_bytes(Image.new("1", (8000, 8000))), 413, "50,000,000 pixels"),
    "decompression bomb": (png_bytes(Image.new("1", (20000, 10000))), 413, "pixels"),
    "too thin to resize": (png_bytes(Image.new("RGB", (1, 5000))), 422, "cannot segment this 1 x 5000 image"),
}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
@pytest.mark.parametrize("as_file", [False, True], ids=["raw", "multipart"])
def test_bad_uploads(server, name, as_file):
    body, status, words = BAD_UPLOADS[name]
    if as_file and not body:
        return  # an empty multipart file is its own case below
    reply = server.post_image("/v1/segment", body, filename="upload.bin" if as_file else None)
    assert reply.status == status, reply.body
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["status"] == status and words in reply.json()["error"]


@pytest.mark.parametrize("query, words", [
    ("task=depth", "unknown task 'depth'; choose one of panoptic, instance, semantic"),
    ("threshold=1.5", "threshold=1.5 is out of range; give a value between 0 and 1"),
    ("mask_threshold=-0.1", "mask_threshold=-0.1 is out of range"),
    ("overlap_threshold=nan", "overlap_threshold=nan is out of range"),
    ("threshold=high", "threshold='high' is not a number"),
    ("treshold=0.3", "unknown query parameter 'treshold'"),
    ("overlay=maybe", "overlay='maybe': give true or false"),
])
def test_bad_queries(server, query, words):
    reply = server.post_image(f"/v1/segment?{query}", EXAMPLE.read_bytes())
    assert reply.status == 400 and words in reply.json()["error"], reply.body


def test_bad_overlay_options(server):
    reply = server.post_image("/v1/overlay?alpha=2", EXAMPLE.read_bytes())
    assert reply.status == 400 and "alpha=2 is out of range" in reply.json()["error"]
    reply = server.post_image("/v1/overlay?overlay=true", EXAMPLE.read_bytes())  # a /v1/segment option
    assert reply.status == 400 and "unknown query parameter 'overlay'" in reply.json()["error"]


def test_uploads_over_the_size_limit(server):
    big = b"\0" * 20_000_001
    for chunked in (False, True):  # refused from Content-Length, and while a chunked body streams in
        reply = server.call("POST", "/v1/segment", big, chunked=chunked)
        assert reply.status == 413, reply.body
        assert "over this server's limit of 20,000,000 bytes" in reply.json()["error"]
        assert "--max-upload-mb" in reply.json()["error"]
    body, content_type = multipart([("image", "big.jpg", big)])
    reply = server.call("POST", "/v1/overlay", body, {"Content-Type": content_type})
    assert reply.status == 413


def test_bad_multipart(server):
    body, content_type = multipart([], {"note": "no file here"})
    reply = server.call("POST", "/v1/segment", body, {"Content-Type": content_type})
    assert reply.status == 400 and "holds no file" in reply.json()["error"]
    body, content_type = multipart([("image", "empty.jpg", b"")])
    reply = server.call("POST", "/v1/segment", body, {"Content-Type": content_type})
    assert reply.status == 400 and "'empty.jpg' is empty" in reply.json()["error"]
    reply = server.call("POST", "/v1/segment", b"garbage", {"Content-Type": "multipart/form-data"})
    assert reply.status == 400 and "without a boundary" in reply.json()["error"]
    # several files: the one in the field named "image" is used
    body, content_type = multipart([("other", "a.txt", b"not this"), ("image", "b.jpg", EXAMPLE.read_bytes())])
    reply = server.call("POST", "/v1/segment", body, {"Content-Type": content_type})
    assert reply.status == 200 and reply.json()["image"] == "b.jpg"


def test_unknown_paths_and_methods(server):
    reply = server.call("GET", "/v2/segment")
    assert reply.status == 404 and "no such endpoint: GET /v2/segment" in reply.json()["error"]
    assert "POST /v1/segment" in reply.json()["error"]
    reply = server.call("GET", "/v1/segment")
    assert reply.status == 405 and "/v1/segment takes POST" in reply.json()["error"]


def test_server_is_still_up_and_wrote_nothing_to_disk(server):
    """Runs after the tests above in this file (pytest keeps file order)."""
    assert server.process.poll() is None
    assert server.call("GET", "/healthz").json() == {"status": "ok"}
    reply = server.post_image("/v1/segment", EXAMPLE.read_bytes(), filename=EXAMPLE.name)
    assert reply.status == 200 and reply.json()["segments"]
    assert list(server.tmpdir.iterdir()) == []
    assert "Traceback" not in server.log.read_text()  # every refusal above was an answer, not a crash


def test_limits_are_options(tmp_path):
    small = start_server(tmp_path, "--max-upload-mb", "0.01", "--max-pixels", "20000", "--task", "semantic")
    try:
        reply = small.post_image("/v1/segment", EXAMPLE.read_bytes())  # 261 x 315 = 82,215 pixels, ~14 kB
        assert reply.status == 413 and "limit of 10,000 bytes" in reply.json()["error"]
        reply = small.post_image("/v1/segment", png_bytes(Image.new("RGB", (200, 150))))  # 30,000 pixels, < 1 kB
        assert reply.status == 413 and "over this server's limit of 20,000 pixels" in reply.json()["error"]
        reply = small.post_image("/v1/segment", png_bytes(Image.new("RGB", (100, 150))))
        assert reply.status == 200 and reply.json()["task"] == "semantic"
        limits = small.call("GET", "/v1/model").json()["limits"]
        assert limits["max_upload_bytes"] == 10_000 and limits["max_pixels"] == 20_000
    finally:
        stop_server(small)


def test_start_up_errors(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert main(["serve", "--port", str(taken.getsockname()[1])]) == 2
    err = capsys.readouterr().err
    assert "cannot listen on 127.0.0.1" in err and "choose another --port" in err
    assert main(["serve", "--port", "0", "--model", str(tmp_path / "no_such_model")]) == 2
    assert "no_such_model" in capsys.readouterr().err
    assert main(["serve", "--max-batch", "0"]) == 2
    assert "--max-batch must be at least 1" in capsys.readouterr().err


def test_a_failing_model_is_a_500_and_the_server_goes_on():
    """A model that raises (say, out of memory): that request gets a JSON 500 naming the error, the next ones are
    served. The app runs in this process, around a stand-in model."""
    import threading
    import time
    from types import SimpleNamespace

    import torch
    import uvicorn
    from serve_helpers import Server

    from mask2former import Mask2FormerImageProcessor
    from mask2former.predict import Predictor
    from mask2former.serve import ServeOptions, bind, create_app

    class FlakyModel(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.config = SimpleNamespace(id2label={0: "thing"}, num_queries=1)
            self.calls = 0

        def forward(self, **inputs):
            self.calls += 1
            raise RuntimeError(f"simulated failure {self.calls}")

    sock = bind("127.0.0.1", 0)
    app = create_app(Predictor(FlakyModel(), Mask2FormerImageProcessor()), ServeOptions(model_name="flaky"))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        client = Server(f"http://127.0.0.1:{sock.getsockname()[1]}", None, None, None)
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        for attempt in (1, 2):
            reply = client.post_image("/v1/segment", EXAMPLE.read_bytes())
            assert reply.status == 500 and reply.json()["status"] == 500
            assert f"RuntimeError: simulated failure {attempt}" in reply.json()["error"]
        assert client.call("GET", "/healthz").json() == {"status": "ok"}
        assert client.call("GET", "/v1/stats").json()["failed_batches"] == 2
    finally:
        server.should_exit = True
        thread.join(timeout=30)
