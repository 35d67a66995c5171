"""A bounded load test on loopback: 8 clients x 25 requests, three tasks, eight different images of one size. Every
request gets its own correct answer (what the predictor gives that image alone), nothing is dropped, and the server
batched requests together (its stats and the X-Batch-Size headers say so).

"Correct" allows for float rounding: with more than one torch thread, a batch splits its work across threads
differently from a lone image, so mask logits differ by ~1e-5 and a pixel at a segment's edge can change sides
(measured: one pixel of one segment in 8 x 3 answers; with one thread the results are bit-identical). The answers
of different images differ by thousands of pixels.
"""

from __future__ import annotations

import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from PIL import Image, ImageOps

from mask2former.predict import TASKS, Predictor, bundled_examples

CLIENTS, REQUESTS = 8, 25


def same_size_images() -> list[Image.Image]:
    """Eight different 256 x 256 scenes: the bundled examples cropped, and their mirror images."""
    crops = []
    for path in bundled_examples():
        with Image.open(path) as image:
            crops.append(image.convert("RGB").crop((0, 0, 256, 256)))
    return crops + [ImageOps.mirror(crop) for crop in crops]


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def same_answer(got: list[dict], want: list[dict]) -> bool:
    """The same segments (ids, labels, order), scores within rounding, areas and boxes within a few edge pixels."""
    if [(s["id"], s["label_id"]) for s in got] != [(s["id"], s["label_id"]) for s in want]:
        return False
    for a, b in zip(got, want):
        if (a["score"] is None) != (b["score"] is None):
            return False
        if a["score"] is not None and abs(a["score"] - b["score"]) > 2e-4:
            return False
        if abs(a["area"] - b["area"]) > 3 + 1e-3 * b["area"]:
            return False
        if max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"])) > 1:
            return False
    return True


def test_concurrent_clients_each_get_their_own_answer(server):
    uploads = [jpeg(image) for image in same_size_images()]
    predictor = Predictor.from_pretrained(device="cpu")
    expected = {}
    for task in TASKS:
        predictor.task = task
        for k, data in enumerate(uploads):
            with Image.open(io.BytesIO(data)) as image:  # the decoded JPEG, as the server sees it
                expected[k, task] = predictor([image.convert("RGB")])[0].segments
    assert len({str(segments) for segments in expected.values()}) == len(expected)  # all answers differ

    before = server.call("GET", "/v1/stats").json()

    def client(c: int) -> list[tuple[int, str, int, object, int]]:
        task = TASKS[c % len(TASKS)]
        replies = []
        for r in range(REQUESTS):
            k = (c + r) % len(uploads)
            reply = server.post_image(f"/v1/segment?task={task}", uploads[k], timeout=120)
            segments = reply.json().get("segments") if reply.status == 200 else reply.body
            replies.append((k, task, reply.status, segments, int(reply.headers.get("x-batch-size", 0))))
        return replies

    with ThreadPoolExecutor(CLIENTS) as pool:
        replies = [reply for replies in pool.map(client, range(CLIENTS)) for reply in replies]

    assert len(replies) == CLIENTS * REQUESTS
    assert [status for _, _, status, _, _ in replies] == [200] * len(replies)
    wrong = [(k, task) for k, task, _, segments, _ in replies if not same_answer(segments, expected[k, task])]
    assert not wrong, f"{len(wrong)} requests got another answer than their own, e.g. {wrong[:3]}"
    exact = sum(segments == expected[k, task] for k, task, _, segments, _ in replies)

    after = server.call("GET", "/v1/stats").json()
    assert after["jobs"] - before["jobs"] == CLIENTS * REQUESTS
    sizes = Counter({int(size): count for size, count in after["batch_sizes"].items()})
    sizes.subtract(Counter({int(size): count for size, count in before["batch_sizes"].items()}))
    assert sum(size * count for size, count in sizes.items()) == CLIENTS * REQUESTS
    assert max(size for size, count in sizes.items() if count > 0) > 1, f"no batching happened: {dict(sizes)}"
    assert max(batch for *_, batch in replies) > 1
    print(f"batch sizes during the load test: {dict(sorted((s, c) for s, c in sizes.items() if c))}; "
          f"{exact} of {len(replies)} answers bit-identical to the lone image's")
