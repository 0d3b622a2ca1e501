"""The web demo and its JSON API (FastAPI): draw samples from trained runs in a browser or a program.

Each run is loaded once per process. What a run's page offers comes from its family's declaration
(Family.serves: seed, truncation, interpolate, image) and its model (a class picker for conditional
models); nothing here names a family. Every request is bounded (Limits) and goes through one
bounded queue (Gate): a full queue answers 503 at once instead of piling up. No file path is ever
taken from a client, and nothing is fetched from outside: the page and its script are served here.

Endpoints (JSON in and out; images are base64 PNG, the animation a base64 GIF):
    GET  /api/health        {"status": "ok", "queued": N}
    GET  /api/models        the runs served, their controls, and the limits
    POST /api/sample        {"model", "seed", "n", "label", "truncation"} -> {"images": [...], "grid": ...}
    POST /api/interpolate   {"model", "seed_a", "seed_b", "frames", "label", "truncation"} -> {"gif": ..., "frames": N}
    POST /api/translate?model=NAME   body: the image file's bytes -> {"input": ..., "images": [...]}
"""

from __future__ import annotations

import asyncio
import base64
import io
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from ..conditioning import Condition
from ..errors import GenforgeError
from ..families.contract import SampleRequest
from ..imageio import image_array, make_grid, to_uint8
from ..run import Run

STATIC = Path(__file__).resolve().parent / "static"


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may ask for."""

    max_images: int = 16
    """Images per /api/sample request."""
    max_frames: int = 32
    """Frames of an interpolation."""
    max_upload_bytes: int = 4 * 1024 * 1024
    """Size of an uploaded image file."""
    max_upload_pixels: int = 4096 * 4096
    """Width x height of an uploaded image (checked before it is decoded)."""
    max_seed: int = 2**31 - 1
    queue: int = 8
    """Requests waiting for the model besides the one it is running; more are answered 503."""


class Gate:
    """One request runs the model at a time; at most `queue` more wait; the rest get 503 at once.

    The counter is only touched on the event loop's thread, so it needs no lock.
    """

    def __init__(self, queue: int):
        self.limit = queue + 1
        self.active = 0
        self.slot = asyncio.Semaphore(1)

    async def run(self, fn, *args):
        if self.active >= self.limit:
            raise HTTPException(503, f"busy: {self.active} requests ahead; try again in a moment")
        self.active += 1
        try:
            async with self.slot:
                return await run_in_threadpool(fn, *args)
        finally:
            self.active -= 1


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str | None = Field(None, max_length=200, description="name from /api/models (default: the first)")
    label: int | None = Field(None, ge=0, description="class for class-conditional models")
    truncation: float | None = Field(None, gt=0, le=4, description="truncation trick (GANs); null: off")


class SampleBody(_Body):
    seed: int = Field(0, ge=0, le=Limits.max_seed)
    n: int = Field(8, ge=1)


class InterpolateBody(_Body):
    seed_a: int = Field(0, ge=0, le=Limits.max_seed)
    seed_b: int = Field(1, ge=0, le=Limits.max_seed)
    frames: int = Field(16, ge=2)


def _png(images: torch.Tensor, nrow: int | None = None) -> str:
    """(N, C, H, W) images in [0, 1] -> one base64 PNG grid (one image when N is 1)."""
    array = make_grid(images, nrow, padding=0 if len(images) == 1 else 2)
    buffer = io.BytesIO()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _gif(frames: torch.Tensor, frame_ms: int = 100) -> str:
    pictures = []
    for img in to_uint8(frames):
        array = img.permute(1, 2, 0).numpy()
        pictures.append(Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array))
    buffer = io.BytesIO()
    pictures[0].save(buffer, format="GIF", save_all=True, append_images=pictures[1:], duration=frame_ms, loop=0)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def describe(name: str, run: Run) -> dict:
    m = run.config.model
    return {"name": name, "family": run.family, "model": m.name, "step": run.step, "image_size": m.image_size,
            "channels": m.channels, "num_classes": m.num_classes, "controls": list(run.model_family.serves)}


def create_app(runs: dict[str, Run], limits: Limits = Limits()) -> FastAPI:
    """The FastAPI app serving `runs` (name -> loaded run), each loaded once by the caller."""
    if not runs:
        raise GenforgeError("nothing to serve; give at least one --run")
    app = FastAPI(title="genforge", docs_url=None, redoc_url=None, openapi_url=None)  # docs pages load scripts from a CDN
    gate = Gate(limits.queue)
    app.state.names = [name for name, run in runs.items() if run.model_family.serves]
    served = {name: run for name, run in runs.items() if run.model_family.serves}
    if not served:
        raise GenforgeError(f"no served family among {', '.join(runs)}; its family declares no web controls")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}"}, status_code=422)

    @app.exception_handler(HTTPException)
    async def _http(request, exc: HTTPException):
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.exception_handler(GenforgeError)
    async def _user(request, exc: GenforgeError):
        return JSONResponse({"error": str(exc)}, status_code=400)

    def pick(name: str | None, control: str, truncation: float | None = None) -> tuple[str, Run]:
        """The served run a request names, refused (4xx) when its family does not offer the control
        or, when a truncation is asked for, the truncation control."""
        name = name or next(iter(served))
        if name not in served:
            raise HTTPException(404, f"no model named {name!r}; choose one of: {', '.join(served)}")
        run = served[name]
        if control not in run.model_family.serves:
            raise HTTPException(400, f"model {name} ({run.family}) does not offer {control}; "
                                     f"it offers: {', '.join(run.model_family.serves)}")
        if truncation is not None and "truncation" not in run.model_family.serves:
            raise HTTPException(400, f"model {name} ({run.family}) does not take a truncation")
        return name, run

    def labels_for(run: Run, label: int | None, n: int) -> torch.Tensor | None:
        classes = run.config.model.num_classes
        if not classes:
            if label is not None:
                raise HTTPException(400, f"model {run.config.model.name} is unconditional; leave label out")
            return None
        if label is None:
            label = 0
        if label >= classes:
            raise HTTPException(400, f"label {label} is out of range; this model has classes 0..{classes - 1}")
        return torch.full((n,), label, dtype=torch.long)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/health")
    async def health():
        return {"status": "ok", "queued": gate.active}

    @app.get("/api/models")
    async def models():
        return {"models": [describe(name, run) for name, run in served.items()], "limits": asdict(limits)}

    @app.post("/api/sample")
    async def sample(body: SampleBody):
        name, run = pick(body.model, "seed", body.truncation)
        if body.n > limits.max_images:
            raise HTTPException(422, f"n: at most {limits.max_images} images per request, got {body.n}")
        labels = labels_for(run, body.label, body.n)
        images = await gate.run(lambda: run.sample(body.n, seed=body.seed, labels=labels, truncation=body.truncation))
        return {"model": name, "seed": body.seed, "n": body.n, "label": None if labels is None else int(labels[0]),
                "images": [_png(img[None]) for img in images], "grid": _png(images)}

    @app.post("/api/interpolate")
    async def interpolate(body: InterpolateBody):
        name, run = pick(body.model, "interpolate", body.truncation)
        if body.frames > limits.max_frames:
            raise HTTPException(422, f"frames: at most {limits.max_frames}, got {body.frames}")
        labels = labels_for(run, body.label, 1)
        frames = await gate.run(lambda: run.interpolate([body.seed_a, body.seed_b], steps=body.frames, labels=labels,
                                                        truncation=body.truncation))
        return {"model": name, "frames": len(frames), "gif": _gif(frames)}

    @app.post("/api/translate")
    async def translate(request: Request, model: str | None = None):
        name, run = pick(model, "image")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            raise HTTPException(413, f"the image is {int(declared):,} bytes; at most {limits.max_upload_bytes:,}")
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > limits.max_upload_bytes:
                raise HTTPException(413, f"the image is over {limits.max_upload_bytes:,} bytes")
        source = _model_input(bytes(data), run, limits)
        outputs = await gate.run(lambda: run.draw(SampleRequest(1, cond=Condition(image=source.to(run.device)))))
        return {"model": name, "input": _png(source.float() / 255), "images": [_png(img[None]) for img in outputs]}

    return app


def _model_input(data: bytes, run: Run, limits: Limits) -> torch.Tensor:
    """An uploaded image file -> uint8 (1, C, S, S) at the model's size: centre square, resized."""
    if not data:
        raise HTTPException(400, "no image in the request body; send the image file's bytes")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > limits.max_upload_pixels:
            raise HTTPException(413, f"the image is {image.width}x{image.height} pixels; at most "
                                     f"{limits.max_upload_pixels:,} pixels")
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, Image.DecompressionBombError, ValueError):
        raise HTTPException(400, "the upload is not an image genforge can read (PNG, JPEG, BMP, ...)") from None
    m = run.config.model
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.convert("L" if m.channels == 1 else "RGB").crop((left, top, left + side, top + side))
    image = image.resize((m.image_size, m.image_size), Image.BICUBIC)
    array = np.array(image_array(image, "L" if m.channels == 1 else "RGB"))  # writable, for torch
    return torch.from_numpy(array).permute(2, 0, 1)[None].contiguous()
