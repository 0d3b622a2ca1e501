"""The web demo's JSON API, in process (FastAPI's TestClient): every endpoint, and bad input
answered with a 4xx and a message, never a 500."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi", reason="the web demo needs the web extra: pip install 'genforge[web]'")
pytest.importorskip("httpx", reason="the API tests need httpx (the browser extra): pip install 'genforge[browser]'")

from fastapi import HTTPException  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from genforge.web.app import Gate, Limits, create_app  # noqa: E402
from tests.web.web_helpers import png_bytes  # noqa: E402


@pytest.fixture(scope="module")
def client(web_runs):
    return TestClient(create_app(web_runs, Limits(max_images=8, max_frames=12, max_upload_bytes=200_000,
                                                  max_upload_pixels=1000 * 1000)), raise_server_exceptions=False)


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_page_and_assets_are_served_locally(client):
    page = client.get("/")
    assert page.status_code == 200 and "genforge" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing fetched from elsewhere
    for asset in ("/static/app.js", "/static/style.css"):
        got = client.get(asset)
        assert got.status_code == 200 and "http://" not in got.text and "https://" not in got.text


def test_health_and_models(client):
    assert client.get("/api/health").json()["status"] == "ok"
    info = client.get("/api/models").json()
    by_name = {m["name"]: m for m in info["models"]}
    assert by_name["cgan"]["controls"] == ["seed", "truncation", "interpolate"] and by_name["cgan"]["num_classes"] == 10
    assert by_name["vae"]["controls"] == ["seed", "interpolate"]
    assert by_name["p2p"]["controls"] == ["image"]
    assert info["limits"]["max_images"] == 8


def test_sample_is_the_runs_sample(client, web_runs):
    out = client.post("/api/sample", json={"model": "cgan", "seed": 5, "n": 3, "label": 4, "truncation": 0.7})
    assert out.status_code == 200, out.text
    body = out.json()
    assert len(body["images"]) == 3 and body["label"] == 4
    want = web_runs["cgan"].sample(3, seed=5, labels=torch.tensor([4]), truncation=0.7)
    first = torch.from_numpy(np.array(decode(body["images"][0]))).float() / 255
    assert torch.allclose(first, want[0, 0], atol=1 / 255 + 1e-6)  # the PNG is the image, rounded to 8 bits
    other = client.post("/api/sample", json={"model": "cgan", "seed": 6, "n": 3, "label": 4}).json()
    assert other["images"] != body["images"]
    assert client.post("/api/sample", json={"model": "vae", "seed": 1, "n": 2}).status_code == 200
    assert decode(body["grid"]).size[0] > decode(body["images"][0]).size[0]


def test_a_diffusion_model_is_served_with_its_own_sampler(client, web_runs):
    info = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert info["diff"]["controls"] == ["seed"] and info["diff"]["num_classes"] == 10
    out = client.post("/api/sample", json={"model": "diff", "seed": 2, "n": 2, "label": 3})
    assert out.status_code == 200, out.text
    want = web_runs["diff"].sample(2, seed=2, labels=torch.tensor([3]))  # the run's saved sampler and steps
    first = torch.from_numpy(np.array(decode(out.json()["images"][0]))).float() / 255
    assert torch.allclose(first, want[0, 0], atol=1 / 255 + 1e-6)
    walk = client.post("/api/interpolate", json={"model": "diff", "seed_a": 1, "seed_b": 2, "frames": 4, "label": 3})
    assert 400 <= walk.status_code < 500 and "interpolat" in walk.json()["error"]  # not a control it serves


def test_interpolate_returns_an_animation(client):
    out = client.post("/api/interpolate", json={"model": "vae", "seed_a": 1, "seed_b": 2, "frames": 6})
    assert out.status_code == 200, out.text
    gif = decode(out.json()["gif"])
    assert gif.format == "GIF" and gif.n_frames == 6


def test_translate_an_uploaded_image(client):
    out = client.post("/api/translate?model=p2p", content=png_bytes(40, 30, channels=3))  # resized to 16x16, gray
    assert out.status_code == 200, out.text
    body = out.json()
    assert decode(body["input"]).size == (16, 16) and decode(body["images"][0]).size == (16, 16)


@pytest.mark.parametrize("path, body, status, words", [
    ("/api/sample", {"model": "cgan", "n": 9}, 422, "at most 8"),
    ("/api/sample", {"model": "cgan", "n": 0}, 422, "n:"),
    ("/api/sample", {"model": "cgan", "seed": -1}, 422, "seed"),
    ("/api/sample", {"model": "cgan", "seed": "abc"}, 422, "seed"),
    ("/api/sample", {"model": "cgan", "n": 2.5}, 422, "n:"),
    ("/api/sample", {"model": "cgan", "label": 10}, 400, "out of range"),
    ("/api/sample", {"model": "cgan", "truncation": 0}, 422, "truncation"),
    ("/api/sample", {"model": "vae", "label": 1}, 400, "unconditional"),
    ("/api/sample", {"model": "vae", "truncation": 0.5}, 400, "truncation"),
    ("/api/sample", {"model": "nope"}, 404, "no model named"),
    ("/api/sample", {"model": "p2p"}, 400, "does not offer seed"),
    ("/api/sample", {"model": "cgan", "path": "/etc/passwd"}, 422, "path"),
    ("/api/sample", [1, 2], 422, "request"),
    ("/api/interpolate", {"model": "vae", "frames": 13}, 422, "at most 12"),
    ("/api/interpolate", {"model": "vae", "frames": 1}, 422, "frames"),
    ("/api/interpolate", {"model": "p2p"}, 400, "does not offer interpolate"),
])
def test_bad_json_is_a_4xx_with_a_message(client, path, body, status, words):
    out = client.post(path, json=body)
    assert out.status_code == status, out.text
    assert words in out.json()["error"]


def test_bad_uploads_are_a_4xx_with_a_message(client):
    cases = [
        (b"", 400, "no image"),
        (b"this is not an image" * 10, 400, "not an image"),
        (png_bytes(1200, 900, flat=True), 413, "pixels"),  # 1.08 M pixels > 1 M, in a small file
        (b"\0" * 300_000, 413, "bytes"),                 # over the byte limit
    ]
    for data, status, words in cases:
        out = client.post("/api/translate?model=p2p", content=data)
        assert out.status_code == status and words in out.json()["error"], (status, out.text)
    assert client.post("/api/translate?model=cgan", content=png_bytes(16, 16)).status_code == 400
    assert client.post("/api/sample", content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 422


def test_a_full_queue_answers_503():
    """Gate: one request runs, `queue` wait, the next is refused at once."""

    async def scenario():
        gate = Gate(queue=1)
        release = asyncio.Event()

        async def slow():
            return await gate.run(lambda: __import__("time").sleep(0.3) or "done")

        first, second = asyncio.create_task(slow()), asyncio.create_task(slow())
        await asyncio.sleep(0.05)
        with pytest.raises(HTTPException) as refused:
            await gate.run(lambda: "never")
        release.set()
        return refused.value.status_code, await first, await second, gate.active

    status, a, b, active = asyncio.run(scenario())
    assert (status, a, b, active) == (503, "done", "done", 0)
