"""The web app of `engage serve`: a JSON API under /v1 (OpenAPI docs at /docs) and one page at /, over one
Predictor loaded once per process. The OpenAPI schema is the contract: every answer has its model
(engage.serve.schemas), every status code a route can return is declared with its body, and the requests'
constraints (a non-empty file of an accepted type, size limits, ranges) are in it. Every refusal is a 4xx with a
one-line JSON {"detail": ...} (Error); FastAPI's own request validation keeps its 422 list (HTTPValidationError)."""

import asyncio
import base64
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, Security, UploadFile
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from engage.errors import EngageError
from engage.inference.annotate import draw_faces, encode_image
from engage.inference.job import image_result
from engage.inference.keyframes import DEFAULT_DETECT_EVERY
from engage.inference.predictor import Predictor
from engage.serve.jobs import JobPool
from engage.serve.jobs import VideoJob as VideoJobState
from engage.serve.live import LiveSessions
from engage.serve.pool import PoolFull, PredictorPool
from engage.serve.schemas import Error, Health, ImageResult, LiveFrame, LiveSession, Models, VideoJob
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
IMAGE_TYPES = ("image/jpeg", "image/png", "image/bmp", "image/gif", "image/tiff", "image/webp")
VIDEO_TYPES = (
    "video/mp4",
    "video/quicktime",
    "video/x-matroska",
    "video/webm",
    "video/x-msvideo",
    "video/mpeg",
    "video/mp2t",
    "video/x-flv",
    "video/x-ms-wmv",
    "video/ogg",
)
# what each refusal means, for the schema (the body is always Error: one line)
REFUSALS = {
    400: "The file name holds a folder, '..' or control characters",
    401: "Missing or wrong token: send 'Authorization: Bearer TOKEN'",
    404: "No such job or live session (unknown, deleted, or past its retention time)",
    408: "The request took longer than the server's time limit",
    409: "The job has not finished: its files come when its state is 'done'",
    413: "The request body, the upload or the image's pixel count is over the server's limit",
    415: "The file is not of an accepted type (its bytes are checked, not its name or Content-Type)",
    429: "Busy: every worker is scoring and the queue is full; retry after Retry-After seconds",
    500: "An internal error (a bug): one line, never a traceback",
}


def _form_bool(value: object) -> object:
    """A form's boolean as the schema says it: true or false, in any case (Python clients send True), but not 1,
    yes or on, which a lax parser would take."""
    if isinstance(value, str):
        if value.lower() not in ("true", "false"):
            raise ValueError("must be true or false")
        return value.lower() == "true"
    return value


FormBool = Annotated[bool, BeforeValidator(_form_bool)]


async def _fields_once(request: Request) -> None:
    """A form names each of its fields once: a second file, or a second value of a field, is refused (422), not
    silently dropped."""
    form = await request.form()  # parsed once per request; FastAPI reads the same
    repeated = sorted({name for name in form if len(form.getlist(name)) > 1})
    if repeated:
        raise RequestValidationError(
            [
                {"loc": ("body", name), "msg": "given more than once; give it once", "type": "value_error"}
                for name in repeated
            ]
        )


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}
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
    device: str = "cpu"  # where the networks run: 'cpu', 'cuda' (bf16) or 'auto' (engage.models.device)


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
        device=settings.device,
    )


def refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The responses= entries of a route's refusals: each with its meaning and the Error body."""
    entries: dict[int | str, dict[str, Any]] = {}
    for code in (*codes, 413, 500):  # any request may be over the body limit; any may meet a bug
        entries[code] = {"model": Error, "description": REFUSALS[code]}
        if code == 429:
            entries[code]["headers"] = RETRY_AFTER
    return entries


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
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        jobs.shutdown()  # every job and upload is deleted when the server stops
        images.shutdown()

    app = FastAPI(
        title="engage",
        version=__version__,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,  # operationIds: score_image, job_status, ...
        docs_url=None,
        redoc_url=None,
        description="Student engagement from facial expression, for research and consented studies only (see the "
        "documentation's responsible-use notice). Nothing is stored beyond a video job's retention time. Every "
        'refusal answers one line as {"detail": ...} (Error); request validation answers FastAPI\'s list '
        "(HTTPValidationError).",
    )
    app.state.predictor, app.state.jobs, app.state.images, app.state.live = predictor, jobs, images, live
    app.add_middleware(BodyLimit, limits=limits)
    _add_error_handlers(app)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.url.path.startswith(("/docs", "/redoc")):  # Swagger UI loads its own scripts
            response.headers.setdefault("Content-Security-Policy", PAGE_POLICY)
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    bearer = HTTPBearer(auto_error=False, description="The token given to `engage serve --token`")

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> None:
        token = settings.token or ""
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), token.encode()):
            raise RefusedError(
                401, "missing or wrong token: send 'Authorization: Bearer TOKEN'", {"WWW-Authenticate": "Bearer"}
            )

    # with a token, every /v1 route needs it (and the schema says so); without one, none does
    api = [Depends(authorised)] if settings.token is not None else []
    auth = (401,) if settings.token is not None else ()

    async def scored(task: Callable[[Callable[[bool], Predictor]], dict]) -> dict:
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

    @app.get("/healthz", tags=["server"], response_model=Health, responses=refusals())
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

    @app.get("/v1/models", tags=["models"], dependencies=api, response_model=Models, responses=refusals(*auth))
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
                "device": predictor.device,
                "expression_classes": predictor.expression_names,
                "base_rate": predictor.adjustment.base_rate,
                "site_calibration": (predictor.adjustment.site.to_dict() if predictor.adjustment.site else None),
                "abstain": predictor.abstain,
                "quality_thresholds": predictor.quality_thresholds.to_dict(),
                "cues": predictor.measure_cues,
                "cue_head": predictor.cue_head is not None,
            },
            "cards": {name: read_card(path) for name, path in shipped_models().items()},
        }

    # ---- images --------------------------------------------------------------------------------------
    image_file = File(
        description=f"One image ({', '.join(IMAGE_TYPES)}), at most {limits.image_bytes} bytes; its bytes say "
        "what it is, not its name or Content-Type",
        json_schema_extra={"minLength": 1},
    )

    @app.post(
        "/v1/images",
        tags=["images"],
        dependencies=[*api, Depends(_fields_once)],
        response_model=ImageResult,
        response_model_exclude_unset=True,
        responses=refusals(*auth, 400, 408, 415, 429),
        openapi_extra={"x-engage-file-types": {"file": IMAGE_TYPES}},
    )
    async def score_image(
        file: Annotated[UploadFile, image_file],
        expressions: Annotated[FormBool, Form(description="Add the fer model's 7 expression probabilities")] = False,
        annotate: Annotated[
            FormBool, Form(description="Add the image with boxes and scores drawn, as base64 PNG")
        ] = False,
    ) -> dict:
        """Every face of one image, biggest first: the same object as `engage predict --json` for that file. An
        image without a face is a result (faces: []). 422: the file is empty or cannot be decoded."""
        name = safe_name(file.filename, "image")
        data = await _read_upload(file, limits.image_bytes)

        def task(fork: Callable[[bool], Predictor]) -> dict:
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
    @app.post(
        "/v1/videos",
        tags=["videos"],
        status_code=202,
        dependencies=[*api, Depends(_fields_once)],
        response_model=VideoJob,
        response_model_exclude_unset=True,
        responses={
            202: {
                "description": "The job, queued",
                "headers": {"Location": {"description": "The job's URL", "schema": {"type": "string"}}},
                "links": _links("job_id", "job_status", "job_delete", "job_csv", "job_timeline"),
            },
            **refusals(*auth, 400, 408, 415, 429),
        },
        openapi_extra={"x-engage-file-types": {"file": VIDEO_TYPES}},
    )
    async def submit_video(
        file: Annotated[
            UploadFile,
            File(
                description=f"One video ({', '.join(VIDEO_TYPES)}), at most {limits.video_bytes} bytes; its bytes "
                "say what it is, not its name or Content-Type",
                json_schema_extra={"minLength": 1},
            ),
        ],
        every: Annotated[int, Form(ge=1, le=1000, description="Score every Nth frame")] = 1,
        detect_every: Annotated[
            int,
            Form(
                ge=1,
                le=1000,
                description="Detect faces on every Nth scored frame and follow them in between (1: detect and "
                "score every face in every frame)",
            ),
        ] = DEFAULT_DETECT_EVERY,
        expressions: Annotated[FormBool, Form(description="Add expression probabilities to the CSV")] = False,
    ) -> JSONResponse:
        """Queue a video; answers 202 with the job at once. Poll GET /v1/jobs/{id}. 422: the file is empty or
        cannot be decoded as a video."""
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
                job = jobs.submit(name, folder, video_path, every, expressions, detect_every)
            except PoolFull:
                raise RefusedError(429, "busy: the video queue is full; retry later", {"Retry-After": "30"}) from None
        except BaseException:
            remove_folder(folder)
            raise
        return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    def job_or_404(job_id: str) -> VideoJobState:
        job = jobs.get(job_id)
        if job is None:
            raise RefusedError(404, f"no job {job_id[:40]!r} (unknown, deleted, or past the retention time)")
        return job

    def finished(job_id: str) -> VideoJobState:
        job = job_or_404(job_id)
        if job.state != "done":
            raise RefusedError(409, f"job {job.id} is {job.state}; its results come when its state is 'done'")
        return job

    @app.get(
        "/v1/jobs/{job_id}",
        tags=["videos"],
        dependencies=api,
        response_model=VideoJob,
        response_model_exclude_unset=True,
        responses=refusals(*auth, 404),
    )
    async def job_status(job_id: str) -> dict:
        """Progress and, when done, the per-face summary (as `engage predict --json` prints for the video)."""
        return job_or_404(job_id).public()

    @app.get(
        "/v1/jobs/{job_id}/faces.csv",
        tags=["videos"],
        dependencies=api,
        response_class=FileResponse,
        responses={
            200: {"description": "One row per face per frame", "content": {"text/csv": {"schema": {"type": "string"}}}},
            **refusals(*auth, 404, 409),
        },
    )
    async def job_csv(job_id: str) -> FileResponse:
        """One row per face per frame: the same CSV as `engage predict --csv`."""
        job = finished(job_id)
        return FileResponse(
            job.csv_path, media_type="text/csv", filename=os.path.splitext(job.source)[0] + ".faces.csv"
        )

    @app.get(
        "/v1/jobs/{job_id}/timeline.png",
        tags=["videos"],
        dependencies=api,
        response_class=FileResponse,
        responses={
            200: {
                "description": "p_engaged per face over time",
                "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            },
            **refusals(*auth, 404, 409),
        },
    )
    async def job_timeline(job_id: str) -> FileResponse:
        """p_engaged per face over time (as `engage predict --timeline` draws it)."""
        return FileResponse(finished(job_id).timeline_path, media_type="image/png")

    @app.delete(
        "/v1/jobs/{job_id}",
        tags=["videos"],
        status_code=204,
        dependencies=api,
        response_class=Response,
        responses={204: {"description": "Deleted with its files"}, **refusals(*auth, 404)},
    )
    async def job_delete(job_id: str) -> Response:
        """Stop the job if it runs, and delete it with its files now."""
        if not jobs.delete(job_id):
            raise RefusedError(404, f"no job {job_id[:40]!r} (unknown, deleted, or past the retention time)")
        return Response(status_code=204)

    # ---- live camera ---------------------------------------------------------------------------------
    @app.post(
        "/v1/live",
        tags=["live"],
        status_code=201,
        dependencies=api,
        response_model=LiveSession,
        responses={
            201: {"description": "The session", "links": _links("session_id", "live_frame", "live_close")},
            **refusals(*auth, 429),
        },
    )
    async def live_open() -> dict:
        """Start a live session: post camera frames to /v1/live/{id}/frames, one at a time."""
        session = live.open()
        if session is None:
            raise RefusedError(429, "too many live sessions; retry shortly", {"Retry-After": "10"})
        return {"id": session.id, "frames_url": f"/v1/live/{session.id}/frames", "idle_s": live.idle_s}

    @app.post(
        "/v1/live/{session_id}/frames",
        tags=["live"],
        dependencies=[*api, Depends(_fields_once)],
        response_model=LiveFrame,
        response_model_exclude_unset=True,
        responses=refusals(*auth, 400, 404, 408, 415, 429),
        openapi_extra={"x-engage-file-types": {"file": IMAGE_TYPES}},
    )
    async def live_frame(session_id: str, file: Annotated[UploadFile, image_file]) -> dict:
        """Faces of one frame with ids kept across frames and p_engaged smoothed over time. The frame is not stored.
        422: the file is empty or cannot be decoded."""
        session = live.get(session_id)
        if session is None:
            raise RefusedError(404, "no such live session (unknown, closed or idle too long); start a new one")
        data = await _read_upload(file, limits.image_bytes)

        def task(fork: Callable[[bool], Predictor]) -> dict:
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

    @app.delete(
        "/v1/live/{session_id}",
        tags=["live"],
        status_code=204,
        dependencies=api,
        response_class=Response,
        responses={204: {"description": "Closed"}, **refusals(*auth, 404)},
    )
    async def live_close(session_id: str) -> Response:
        """End a live session now (it also ends after idle_s seconds without a frame)."""
        if not live.close(session_id):
            raise RefusedError(404, "no such live session")
        return Response(status_code=204)

    app.openapi = lambda: _contract(app)  # type: ignore[method-assign]  # FastAPI's documented way to amend it
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
    """Swagger UI (5.x, which renders OpenAPI 3.1) at /docs from the fastapi-offline package's copy, not from a
    CDN: the docs work offline too."""
    from importlib.resources import files

    from fastapi.openapi.docs import get_swagger_ui_html

    app.mount("/docs/assets", StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="engage API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon.png",
        )


def _links(parameter: str, *operations: str) -> dict[str, dict[str, Any]]:
    """OpenAPI links from a created resource's id to the operations on it (clients and testers follow them)."""
    return {
        operation: {"operationId": operation, "parameters": {parameter: "$response.body#/id"}}
        for operation in operations
    }


def _contract(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, with what FastAPI cannot say by itself: a 422 is either FastAPI's validation list or our
    Error (a file that is empty or cannot be decoded), and which media types each file field takes."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    for operations in schema["paths"].values():
        for operation in operations.values():
            unprocessable = operation["responses"].get("422")
            if unprocessable is not None:
                unprocessable["description"] = (
                    "The request does not match the schema (HTTPValidationError), or its file is empty or cannot "
                    "be decoded (Error)"
                )
                refs = [{"$ref": "#/components/schemas/HTTPValidationError"}, {"$ref": "#/components/schemas/Error"}]
                unprocessable["content"] = {"application/json": {"schema": {"anyOf": refs}}}
            file_types = operation.pop("x-engage-file-types", None)
            if file_types:
                form = operation["requestBody"]["content"]["multipart/form-data"]
                form["encoding"] = {field: {"contentType": ", ".join(types)} for field, types in file_types.items()}
                body = schema["components"]["schemas"][form["schema"]["$ref"].rsplit("/", 1)[1]]
                for field in file_types:  # bytes, as generators and clients of OpenAPI 3.0 and 3.1 both read it
                    body["properties"][field]["format"] = "binary"
    app.openapi_schema = schema
    return schema


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of this path answers (the Allow header of a 405)."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


def _add_error_handlers(app: FastAPI) -> None:
    def refusal(status: int, detail: object, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"detail": _one_line(detail)}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405:  # Starlette names the first matching route's methods only
            allowed = _allowed_methods(app, request.url.path)
            if allowed:
                headers["Allow"] = ", ".join(allowed)
            return refusal(
                405, f"{request.method} is not allowed here; allowed: {headers.get('Allow', 'none')}", headers
            )
        return refusal(error.status_code, error.detail, headers or None)

    # FastAPI's own list; Starlette types a handler's error as Exception, FastAPI's handler takes the subclass
    app.add_exception_handler(RequestValidationError, request_validation_exception_handler)  # type: ignore[arg-type]

    @app.exception_handler(EngageError)
    async def engage_error(_request: Request, error: EngageError) -> JSONResponse:
        return refusal(422, error)

    @app.exception_handler(Exception)
    async def internal(_request: Request, error: Exception) -> JSONResponse:  # a bug: one line, never a traceback
        return refusal(500, f"internal error: {type(error).__name__}")
