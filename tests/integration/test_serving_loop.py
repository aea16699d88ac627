"""The REST server runs on the actor pool's own event loop; tokens come from the
replica's process. Management calls must stay fast while a stream is running."""

import threading
import time

import requests

from tests.conftest import GEMMA_UID


def test_management_answers_while_a_stream_runs(api):
    started = threading.Event()
    chunks = []

    def stream():
        with requests.post(api + "/v1/completions", stream=True, json={
                "model": GEMMA_UID, "prompt": "1, 2, 3, 4, 5,", "max_tokens": 200, "stream": True,
                "temperature": 0}) as r:
            for line in r.iter_lines():
                if line.startswith(b"data: {"):
                    chunks.append(line)
                    started.set()

    t = threading.Thread(target=stream)
    t.start()
    assert started.wait(30)
    worst = 0.0
    for _ in range(10):
        t0 = time.monotonic()
        assert requests.get(api + "/v1/models").status_code == 200
        assert requests.get(api + f"/v1/models/{GEMMA_UID}").status_code == 200
        worst = max(worst, time.monotonic() - t0)
    still_streaming = t.is_alive()
    t.join(60)
    assert still_streaming, "the stream should outlast the management calls"
    assert worst < 0.5
    assert len(chunks) > 20
