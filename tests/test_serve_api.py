"""`engage serve`'s HTTP API, in process (FastAPI's TestClient: httpx against the real app, lifespan included) with
the real shipped model on real photos and a video made from them: results equal Predictor's and `engage predict
--csv`'s; the video job lifecycle, queue, retention; hostile uploads are refused with a one-line 4xx."""

from __future__ import annotations

import base64
import io
import json
import os
import time
import zlib

import numpy as np
import pytest
from conftest import run_cli, write_image

pytest.importorskip("fastapi", reason="needs the extra 'serve': pip install 'engage[serve]'")
pytest.importorskip("multipart", reason="needs the extra 'serve': pip install 'engage[serve]'")
pytest.importorskip("httpx", reason="needs the extra 'dev' (httpx)")

from fastapi.testclient import TestClient

from engage.serve.app import ServeSettings, create_app
from engage.serve.uploads import MB, Limits

pytest_plugins = ["predict_fixtures"]


@pytest.fixture(scope="module")
def served_predictor(engagement_model):
    """The server's one Predictor (with the expression model), shared by the apps of this module."""
    from engage.serve.app import load_predictor

    return load_predictor(ServeSettings(model=engagement_model))


def make_client(predictor, **settings) -> TestClient:
    settings.setdefault("workers", 2)
    return TestClient(create_app(ServeSettings(**settings), predictor=predictor))


@pytest.fixture(scope="module")
def client(served_predictor):
    with make_client(served_predictor) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def photos(tmp_path_factory, sample_images) -> dict:
    folder = tmp_path_factory.mktemp("photos")
    return {name: write_image(folder / name, rgb) for name, rgb in sample_images.items()}


@pytest.fixture(scope="module")
def lecture(tmp_path_factory) -> str:
    """The demo video: real faces (the astronaut moving, the cameraman still), 24 frames."""
    from engage.inference.demo import write_demo_video

    path = str(tmp_path_factory.mktemp("video") / "lecture.mp4")
    write_demo_video(path, frames=24)
    return path


def post_image(client, path, **fields):
    with open(path, "rb") as handle:
        return client.post(
            "/v1/images",
            files={"file": (os.path.basename(path), handle, "application/octet-stream")},
            data={k: str(v).lower() for k, v in fields.items()},
        )


def assert_refused(response, status: int, *words: str) -> str:
    """A 4xx whose body is JSON {"detail": one line} (never a traceback)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]
    for word in words:
        assert word in body["detail"], body["detail"]
    return body["detail"]


def assert_invalid(response, *fields: str) -> list:
    """FastAPI's own answer to a request that does not match the schema: 422 with its list of errors
    (HTTPValidationError), one per field, each naming where it is."""
    assert response.status_code == 422, (response.status_code, response.text)
    errors = response.json()["detail"]
    assert isinstance(errors, list) and errors, errors
    assert sorted(error["loc"][-1] for error in errors) == sorted(fields), errors
    assert all(error["msg"] and "\n" not in error["msg"] for error in errors)
    return errors


def wait_for_job(client, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


# ---- images -------------------------------------------------------------------------------------------
def test_image_result_equals_predictor_on_the_same_file(client, photos, served_predictor):
    from engage.inference.annotate import draw_faces
    from engage.inference.job import image_result
    from engage.inference.predictor import Predictor
    from engage.io.images import read_image

    predictor = Predictor(served_predictor.model_name)  # a fresh one, as `engage predict` builds it
    for name in ("group.png", "astronaut.png", "coffee.png"):
        response = post_image(client, photos[name], annotate=True)
        assert response.status_code == 200, response.text
        result = response.json()
        png = base64.b64decode(result.pop("annotated_png"))
        rgb = read_image(photos[name])
        faces = predictor.predict(str(photos[name]))
        assert result == image_result(name, rgb.shape[1], rgb.shape[0], faces)  # the `engage predict --json` object
        assert len(result["faces"]) == {"group.png": 3, "astronaut.png": 1, "coffee.png": 0}[name]
        for face in result["faces"]:  # the attention cues, measured by the server as predict measures them
            assert set(face["cues"]) >= {"yaw", "pitch", "roll", "gaze_yaw", "gaze_pitch", "eyes_open", "mouth_open"}
            assert abs(face["cues"]["yaw"]) < 10
        from engage.io.images import read_image_bytes

        assert np.array_equal(read_image_bytes(png), draw_faces(rgb, faces, predictor.positive_class))


def test_image_expressions_equal_predictor_with_expressions(client, photos, predictor):
    response = post_image(client, photos["astronaut.png"], expressions=True)
    assert response.status_code == 200, response.text
    faces = response.json()["faces"]
    assert faces == [face.to_dict() for face in predictor.predict(str(photos["astronaut.png"]))]
    assert faces[0]["expression"] and len(faces[0]["expressions"]) == 7


def test_models_and_health(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "engagement" and health["auth"] is False
    models = client.get("/v1/models").json()
    assert models["serving"]["model"] == "engagement" and models["serving"]["detector"] == "mtcnn"
    assert models["serving"]["device"] == "cpu"  # the default: --device cpu
    assert models["cards"]["engagement"]["classes"] == ["disengaged", "engaged"]
    assert "fer" in models["cards"]
    assert client.get("/docs").status_code == 200 and "/v1/videos" in client.get("/openapi.json").json()["paths"]


# ---- videos -------------------------------------------------------------------------------------------
def test_video_job_lifecycle_and_csv_equals_engage_predict_csv(client, lecture, tmp_path):
    with open(lecture, "rb") as handle:
        response = client.post("/v1/videos", files={"file": ("lecture.mp4", handle, "video/mp4")})
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["state"] in ("queued", "running") and response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert client.get(f"/v1/jobs/{job['id']}/faces.csv").status_code in (200, 409)  # 409 until done
    job = wait_for_job(client, job["id"])
    assert job["state"] == "done" and job["progress"] == 1.0 and job["frames_done"] == job["frames_total"] == 24
    served_csv = client.get(f"/v1/jobs/{job['id']}/faces.csv")
    assert served_csv.status_code == 200 and served_csv.headers["content-type"].startswith("text/csv")
    timeline = client.get(f"/v1/jobs/{job['id']}/timeline.png")
    assert timeline.status_code == 200 and timeline.content.startswith(b"\x89PNG")

    # the CLI on the same file, named the same way
    os.symlink(lecture, tmp_path / "lecture.mp4")
    cli = run_cli("predict", "lecture.mp4", "--csv", "cli.csv", "--json", cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    assert served_csv.content == (tmp_path / "cli.csv").read_bytes()
    cli_result = json.loads(cli.stdout.splitlines()[0])
    for key in ("source", "frames_scored", "frames_with_faces", "duration_s", "faces", "fps", "width", "height"):
        assert job["result"][key] == cli_result[key], key
    assert [face["face_id"] for face in job["result"]["faces"]] == [1, 2]

    # the upload is gone as soon as the job ended; DELETE removes the rest
    folder = client.app.state.jobs.jobs[job["id"]].folder
    assert sorted(os.listdir(folder)) == ["faces.csv", "video.timeline.png"]
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert not os.path.exists(folder)
    assert_refused(client.get(f"/v1/jobs/{job['id']}"), 404, "no job")
    assert_refused(client.delete(f"/v1/jobs/{job['id']}"), 404)


def test_a_full_video_queue_answers_429_with_retry_after(served_predictor, tmp_path):
    from engage.inference.demo import write_demo_video

    long_video = str(tmp_path / "long.mp4")
    write_demo_video(long_video, frames=150)
    with make_client(served_predictor, workers=1, video_queue=0) as busy:
        with open(long_video, "rb") as handle:
            first = busy.post("/v1/videos", files={"file": ("long.mp4", handle.read())})
        assert first.status_code == 202
        with open(long_video, "rb") as handle:
            second = busy.post("/v1/videos", files={"file": ("long.mp4", handle.read())})
        assert_refused(second, 429, "busy")
        assert int(second.headers["retry-after"]) > 0
        assert busy.delete(f"/v1/jobs/{first.json()['id']}").status_code == 204  # stops the running job
        assert busy.get("/healthz").status_code == 200


def test_jobs_are_deleted_after_the_retention_time_and_at_shutdown(served_predictor, lecture):
    with make_client(served_predictor, retention_s=0.5) as short:
        with open(lecture, "rb") as handle:
            job = short.post("/v1/videos", files={"file": ("lecture.mp4", handle.read())}, data={"every": "6"}).json()
        folder = short.app.state.jobs.jobs[job["id"]].folder
        assert wait_for_job(short, job["id"])["state"] == "done"
        time.sleep(1.0)
        assert_refused(short.get(f"/v1/jobs/{job['id']}"), 404, "retention")
        assert not os.path.exists(folder)
    with make_client(served_predictor) as server:
        with open(lecture, "rb") as handle:
            job = server.post("/v1/videos", files={"file": ("lecture.mp4", handle.read())}, data={"every": "6"}).json()
        folder = server.app.state.jobs.jobs[job["id"]].folder
        assert os.path.isdir(folder)
    assert not os.path.exists(folder)  # the server stopped: nothing is kept


# ---- live ---------------------------------------------------------------------------------------------
def test_live_frames_keep_face_ids_and_smooth_p_engaged(client, astronaut):
    from PIL import Image

    from engage.inference.predictor import Predictor
    from engage.io.images import read_image_bytes

    buffer = io.BytesIO()
    Image.fromarray(astronaut).save(buffer, "JPEG", quality=90)
    frame = buffer.getvalue()
    session = client.post("/v1/live")
    assert session.status_code == 201
    url = session.json()["frames_url"]
    results = [client.post(url, files={"file": ("frame.jpg", frame)}).json() for _ in range(3)]
    expected = Predictor("engagement").predict(read_image_bytes(frame))[0]
    assert [r["frame"] for r in results] == [0, 1, 2]
    for result in results:
        assert [face["face_id"] for face in result["faces"]] == [1]
        assert result["faces"][0]["p_engaged_raw"] == round(expected.p_engaged, 4)
    assert results[0]["faces"][0]["p_engaged"] == round(expected.p_engaged, 4)  # the first frame: nothing to smooth
    assert client.delete(f"/v1/live/{session.json()['id']}").status_code == 204
    assert_refused(client.post(url, files={"file": ("frame.jpg", frame)}), 404, "live session")


# ---- limits and hostile uploads -----------------------------------------------------------------------
def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit PNG of width x height pixels (900 million) that compresses to about 100 kB."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")

    row = bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    data = b"".join(compressor.compress(row * 1000) for _ in range(height // 1000)) + compressor.flush()
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def test_hostile_uploads_are_refused_with_a_one_line_4xx_and_the_server_still_answers(client, photos, lecture):
    png = photos["astronaut.png"].read_bytes()
    bomb = png_bomb()
    assert len(bomb) < 1 * MB
    with open(lecture, "rb") as handle:
        video = handle.read()
    cases = [
        ("/v1/images", ("big.png", png + bytes(21 * MB)), 413, "limit"),  # oversized
        ("/v1/images", ("cut.png", png[: len(png) // 3]), 422, "truncated"),
        ("/v1/images", ("poly.png", png[:64] + b"<script>alert(1)</script>"), 422, "corrupt"),  # image header + script
        ("/v1/images", ("evil.html", b"<html><script>alert(1)</script></html>"), 415, "script"),
        ("/v1/images", ("bomb.png", bomb), 413, "pixels"),
        ("/v1/images", ("notes.txt", b"just some text, not an image"), 415, "neither"),
        ("/v1/images", ("lecture.mp4", video), 415, "/v1/videos"),  # wrong type for the endpoint
        ("/v1/images", ("empty.png", b""), 422, "empty"),
        ("/v1/images", ("../../etc/passwd.png", png), 400, "plain name"),  # path-like names
        ("/v1/images", ("..", png), 400, "plain name"),
        ("/v1/videos", ("x/../lecture.mp4", video), 400, "plain name"),
        ("/v1/videos", ("photo.mp4", png), 415, "/v1/images"),
        ("/v1/videos", ("broken.mp4", video[:32] + os.urandom(4000)), 422, "broken.mp4"),  # cannot be decoded
        ("/v1/videos", ("script.mp4", b"#!/bin/sh\nrm -rf /\n"), 415, "not a video"),
    ]
    for path, upload, status, word in cases:
        detail = assert_refused(client.post(path, files={"file": upload}), status, word)
        assert "/tmp" not in detail and "engage-serve" not in detail  # no server path leaks
        assert client.get("/healthz").json()["status"] == "ok"
    # a body sent in chunks without Content-Length is cut off at the cap too
    assert_refused(
        client.post(
            "/v1/images",
            content=(bytes(MB) for _ in range(30)),
            headers={"content-type": "multipart/form-data; boundary=x"},
        ),
        413,
        "limit",
    )
    assert_invalid(client.post("/v1/videos", data={"every": "0"}, files={"file": ("a.mp4", video)}), "every")
    assert_invalid(client.post("/v1/images", data={"x": "1"}), "file")
    assert client.app.state.jobs.jobs == {}  # no refused video left a job (or its files) behind


def test_token_time_limit_and_refusals_stay_4xx(served_predictor, photos):
    with make_client(served_predictor, token="s3cret") as guarded:
        assert guarded.get("/healthz").json()["auth"] is True
        assert_refused(guarded.get("/v1/models"), 401, "token")
        assert guarded.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert_refused(guarded.get("/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
    with make_client(served_predictor, limits=Limits(request_s=0.001)) as hurried:
        assert_refused(post_image(hurried, photos["group.png"]), 408, "limit")
        assert_refused(hurried.get("/nowhere"), 404)


def test_serve_on_a_port_in_use_or_a_foreign_address_is_one_line():
    """Before any model is loaded: a port another server holds, or an address not of this machine."""
    import socket

    from conftest import assert_one_line_error, run_cli

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert_one_line_error(run_cli("serve", "--port", str(port)), f"port {port}", "in use")
    assert_one_line_error(run_cli("serve", "--host", "203.0.113.7", "--port", "8000"), "cannot listen on 203.0.113.7")


def test_the_schemas_constraints_are_the_servers(client, photos):
    """What the schema refuses the server refuses: a boolean is true or false (in any case, as Python clients send
    True), never 1 or yes; a field given twice is refused, not silently dropped; an empty file is 422 Error."""
    for text in ("true", "True", "false"):
        assert post_image(client, photos["coffee.png"], annotate=text).status_code == 200
    for text in ("1", "yes", "on", "0"):
        assert_invalid(post_image(client, photos["coffee.png"], annotate=text), "annotate")
    with open(photos["coffee.png"], "rb") as handle:
        png = handle.read()
    twice = client.post("/v1/images", files=[("file", ("a.png", png)), ("file", ("b.png", png))])
    assert_invalid(twice, "file")
    assert_invalid(
        client.post("/v1/images", files={"file": ("a.png", png)}, data={"annotate": ["true", "false"]}), "annotate"
    )
    assert_refused(client.post("/v1/images", files={"file": ("empty.png", b"")}), 422, "empty")


def test_a_method_a_path_does_not_take_is_405_with_every_method_it_does_take(client):
    """Allow names the methods of every route of the path (GET and DELETE of a job are two routes)."""
    for method in ("PATCH", "PUT", "OPTIONS"):
        response = client.request(method, "/v1/jobs/abc")
        assert response.status_code == 405 and response.headers["allow"] == "DELETE, GET", response.headers
        assert_refused(response, 405, method)
    assert client.request("PUT", "/v1/images").headers["allow"] == "POST"
    assert client.request("GET", "/v1/live/abc/frames").headers["allow"] == "POST"
