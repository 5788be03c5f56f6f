"""The web app of `engage serve`: a JSON API under /v1 (OpenAPI docs at /docs) and one page at /, over one
Predictor loaded once per process. Every refusal is a 4xx with a one-line JSON {"detail": ...}."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from engage.errors import EngageError
from engage.inference.annotate import draw_faces, encode_image
from engage.inference.job import image_result
from engage.inference.predictor import Predictor
from engage.serve.jobs import JobPool
from engage.serve.live import LiveSessions
from engage.serve.pool import PoolFull, PredictorPool
from engage.serve.uploads import (
    BodyLimit,
    Limits,
    RefusedError,
    decode_image,
    private_folder,
    remove_folder,
    safe_name,
    save_upload,
)
from engage.version import __version__

STATIC = resources.files("engage.serve") / "static"
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class ServeSettings:
    """Everything `engage serve` takes besides host and port."""

    model: str = "engagement"
    detector: str | None = None
    backend: str = "torch"
    expression_views: str = "model"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # per pool: images, and video jobs
    image_queue: int = 32  # image requests waiting beyond the workers before 429
    video_queue: int = 4  # video jobs waiting beyond the workers before 429
    retention_s: float = 3600.0
    token: str | None = None
    smoothing_s: float = 1.0
    limits: Limits = field(default_factory=Limits)
    base_rate: float | None = None  # share of on-task faces expected at the site (None: the model's own rate)
    calibration: str | None = None  # a site calibration file (engage calibrate)
    abstain: bool = True  # faces that cannot be judged are 'uncertain'
    cues: bool = True  # attention cues per face (and their effect on p_engaged)


def load_predictor(settings: ServeSettings) -> Predictor:
    """The server's one Predictor (with the expression model, used only when a request asks)."""
    return Predictor(
        settings.model,
        detector=settings.detector,
        backend=settings.backend,
        expressions=True,
        expression_views=settings.expression_views,
        smoothing_s=settings.smoothing_s,
        base_rate=settings.base_rate,
        calibration=settings.calibration,
        abstain=settings.abstain,
        cues=settings.cues,
    )


def create_app(settings: ServeSettings | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The FastAPI app; the predictor is loaded here (once) unless given."""
    settings = settings or ServeSettings()
    limits = settings.limits
    predictor = predictor or load_predictor(settings)
    images = PredictorPool(predictor, settings.workers, settings.image_queue, "engage-image")
    jobs = JobPool(
        PredictorPool(predictor, settings.workers, settings.video_queue, "engage-video"),
        settings.retention_s,
        limits.video_s,
    )
    live = LiveSessions(settings.smoothing_s)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app):
        yield
        jobs.shutdown()  # every job and upload is deleted when the server stops
        images.shutdown()

    # OpenAPI 3.0 rather than FastAPI's 3.1: the Swagger UI bundled for offline use (4.x) renders 3.0 only
    app = FastAPI(
        title="engage",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Student engagement from facial expression, for research (see the README's "
        "responsible-use notice). Nothing is stored beyond a video job's retention time.",
    )
    app.openapi_version = "3.0.3"
    app.state.predictor, app.state.jobs, app.state.images, app.state.live = predictor, jobs, images, live
    app.add_middleware(BodyLimit, limits=limits)
    _add_error_handlers(app)

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.url.path.startswith(("/docs", "/redoc")):  # Swagger UI loads its own scripts
            response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    def authorised(request: Request) -> None:
        if settings.token is None:
            return
        given = request.headers.get("authorization", "")
        if not (given.startswith("Bearer ") and secrets.compare_digest(given[7:].encode(), settings.token.encode())):
            raise RefusedError(
                401, "missing or wrong token: send 'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"}
            )

    api = [Depends(authorised)]

    async def scored(task):
        """Run task(fork) on the image pool within the request time limit; 429 when the pool is full."""
        try:
            future = images.submit(task)
        except PoolFull:
            raise RefusedError(
                429, "busy: every worker is scoring and the queue is full; retry shortly", {"Retry-After": "1"}
            ) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limits.request_s)
        except TimeoutError:
            raise RefusedError(
                408, f"the request took longer than the server's limit of {limits.request_s:g} s"
            ) from None

    # ---- page ----------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _add_offline_docs(app)

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict:
        """The server answers; what it scores with; whether the API needs a token."""
        return {
            "status": "ok",
            "version": __version__,
            "model": predictor.model_name,
            "jobs": len(jobs.jobs),
            "live_sessions": live.count(),
            "auth": settings.token is not None,
        }

    @app.get("/v1/models", tags=["models"], dependencies=api)
    async def models() -> dict:
        """The model cards of the shipped models, and the settings this server scores with."""
        from engage.models.cards import read_card
        from engage.models.loading import shipped_models

        return {
            "serving": {
                "model": predictor.model_name,
                "classes": predictor.class_names,
                "positive_class": predictor.positive_class,
                "threshold": predictor.decision.threshold,
                "detector": predictor.detector_name,
                "backend": predictor.backend,
                "expression_classes": predictor.expression_names,
                "base_rate": predictor.adjustment.base_rate,
                "site_calibration": (predictor.adjustment.site.to_dict() if predictor.adjustment.site else None),
                "abstain": predictor.abstain,
                "quality_thresholds": predictor.quality_thresholds.to_dict(),
                "cues": predictor.face_mesh is not None,
                "cue_head": predictor.cue_head is not None,
            },
            "cards": {name: read_card(path) for name, path in shipped_models().items()},
        }

    # ---- images --------------------------------------------------------------------------------------
    @app.post("/v1/images", tags=["images"], dependencies=api)
    async def score_image(
        file: Annotated[UploadFile, File(description="One image (JPEG, PNG, BMP, GIF, TIFF, WebP)")],
        expressions: Annotated[bool, Form(description="Add the fer model's 7 expression probabilities")] = False,
        annotate: Annotated[bool, Form(description="Add the image with boxes and scores drawn, as base64 PNG")] = False,
    ) -> dict:
        """Every face of one image, biggest first: the same object as `engage predict --json` for that file."""
        name = safe_name(file.filename, "image")
        data = await _read_upload(file, limits.image_bytes)

        def task(fork) -> dict:
            rgb = decode_image(data, name, limits)
            scorer = fork(expressions)
            faces = scorer.predict(rgb)
            result = image_result(name, rgb.shape[1], rgb.shape[0], faces)
            if annotate:
                png = encode_image(draw_faces(rgb, faces, scorer.positive_class), ".png", name)
                result["annotated_png"] = base64.b64encode(png.tobytes()).decode("ascii")
            return result

        return await scored(task)

    # ---- videos --------------------------------------------------------------------------------------
    @app.post("/v1/videos", tags=["videos"], status_code=202, dependencies=api)
    async def submit_video(
        file: Annotated[UploadFile, File(description="One video (mp4, mkv, webm, avi, mov, ...)")],
        every: Annotated[int, Form(ge=1, le=1000, description="Score every Nth frame")] = 1,
        expressions: Annotated[bool, Form(description="Add expression probabilities to the CSV")] = False,
    ):
        """Queue a video; answers 202 with the job at once. Poll GET /v1/jobs/{id}."""
        if jobs.pool.pending >= jobs.pool.capacity:
            raise RefusedError(429, "busy: the video queue is full; retry later", {"Retry-After": "30"})
        name = safe_name(file.filename, "video")
        folder = private_folder()
        try:
            path, kind = await save_upload(file, folder, limits.video_bytes)
            if kind is None:
                raise RefusedError(415, f"{name}: not a video this server reads (mp4, mkv, webm, avi, mov, ...)")
            if kind[0] == "image":
                raise RefusedError(415, f"{name}: this is an image; post it to /v1/images")
            video_path = os.path.join(folder, "upload" + kind[1])
            os.replace(path, video_path)
            try:
                await asyncio.wait_for(
                    asyncio.get_running_loop().run_in_executor(None, _check_video, video_path, name), limits.request_s
                )
            except TimeoutError:
                raise RefusedError(408, f"{name}: opening the video took longer than {limits.request_s:g} s") from None
            try:
                job = jobs.submit(name, folder, video_path, every, expressions)
            except PoolFull:
                raise RefusedError(429, "busy: the video queue is full; retry later", {"Retry-After": "30"}) from None
        except BaseException:
            remove_folder(folder)
            raise
        return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    def job_or_404(job_id: str):
        job = jobs.get(job_id)
        if job is None:
            raise RefusedError(404, f"no job {job_id[:40]!r} (unknown, deleted, or past the retention time)")
        return job

    def finished(job_id: str):
        job = job_or_404(job_id)
        if job.state != "done":
            raise RefusedError(409, f"job {job.id} is {job.state}; its results come when its state is 'done'")
        return job

    @app.get("/v1/jobs/{job_id}", tags=["videos"], dependencies=api)
    async def job_status(job_id: str) -> dict:
        """Progress and, when done, the per-face summary (as `engage predict --json` prints for the video)."""
        return job_or_404(job_id).public()

    @app.get("/v1/jobs/{job_id}/faces.csv", tags=["videos"], dependencies=api)
    async def job_csv(job_id: str) -> FileResponse:
        """One row per face per frame: the same CSV as `engage predict --csv`."""
        job = finished(job_id)
        return FileResponse(
            job.csv_path, media_type="text/csv", filename=os.path.splitext(job.source)[0] + ".faces.csv"
        )

    @app.get("/v1/jobs/{job_id}/timeline.png", tags=["videos"], dependencies=api)
    async def job_timeline(job_id: str) -> FileResponse:
        """p_engaged per face over time (as `engage predict --timeline` draws it)."""
        return FileResponse(finished(job_id).timeline_path, media_type="image/png")

    @app.delete("/v1/jobs/{job_id}", tags=["videos"], status_code=204, dependencies=api)
    async def job_delete(job_id: str) -> Response:
        """Stop the job if it runs, and delete it with its files now."""
        if not jobs.delete(job_id):
            raise RefusedError(404, f"no job {job_id[:40]!r} (unknown, deleted, or past the retention time)")
        return Response(status_code=204)

    # ---- live camera ---------------------------------------------------------------------------------
    @app.post("/v1/live", tags=["live"], status_code=201, dependencies=api)
    async def live_open() -> dict:
        """Start a live session: post camera frames to /v1/live/{id}/frames, one at a time."""
        session = live.open()
        if session is None:
            raise RefusedError(429, "too many live sessions; retry shortly", {"Retry-After": "10"})
        return {"id": session.id, "frames_url": f"/v1/live/{session.id}/frames", "idle_s": live.idle_s}

    @app.post("/v1/live/{session_id}/frames", tags=["live"], dependencies=api)
    async def live_frame(
        session_id: str, file: Annotated[UploadFile, File(description="One camera frame (JPEG or PNG)")]
    ) -> dict:
        """Faces of one frame with ids kept across frames and p_engaged smoothed over time. The frame is not stored."""
        session = live.get(session_id)
        if session is None:
            raise RefusedError(404, "no such live session (unknown, closed or idle too long); start a new one")
        data = await _read_upload(file, limits.image_bytes)

        def task(fork) -> dict:
            rgb = decode_image(data, "frame", limits)
            with session.lock:
                frame = fork(False).predict_stream_frame(rgb, session.clock(), session.stream)
            return {
                "frame": frame.frame,
                "time_s": round(frame.time_s, 3),
                "width": frame.width,
                "height": frame.height,
                "faces": [face.to_dict() for face in frame.faces],
            }

        return await scored(task)

    @app.delete("/v1/live/{session_id}", tags=["live"], status_code=204, dependencies=api)
    async def live_close(session_id: str) -> Response:
        if not live.close(session_id):
            raise RefusedError(404, "no such live session")
        return Response(status_code=204)

    return app


async def _read_upload(upload: UploadFile, limit: int) -> bytes:
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise RefusedError(413, f"upload over the limit of {limit // (1024 * 1024)} MB")
    if not data:
        raise RefusedError(422, "empty upload (0 bytes)")
    return data


def _check_video(path: str, name: str) -> None:
    """Open the saved upload and read its first frame now, so that an undecodable video is refused at once."""
    from engage.io.video import VideoSource

    try:
        VideoSource(path).close()
    except EngageError as error:
        raise RefusedError(422, str(error).replace(path, name)) from None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())[:500]


def _add_offline_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the swagger-ui-bundle package, not from a CDN: the docs work offline too."""
    import swagger_ui_bundle
    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs/assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="engage API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


def _add_error_handlers(app: FastAPI) -> None:
    def refusal(status: int, detail: object, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"detail": _one_line(detail)}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, error: StarletteHTTPException):
        return refusal(error.status_code, error.detail, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request, error: RequestValidationError):
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        return refusal(422, f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid"))

    @app.exception_handler(EngageError)
    async def engage_error(_request, error: EngageError):
        return refusal(422, error)

    @app.exception_handler(Exception)
    async def internal(_request, error: Exception):  # a bug: one line, never a traceback
        return refusal(500, f"internal error: {type(error).__name__}")
