"""The HTTP API keeps its OpenAPI contract. schemathesis runs every check against a real `engage serve` process
(a fixed seed and bounded examples, so that it repeats and fits CI; ENGAGE_SCHEMATHESIS_EXAMPLES and
ENGAGE_SCHEMATHESIS_SEED raise and vary them), with and without a token; a client generated from the schema by
openapi-python-client scores an image and a video and reads the refusals; the schema in docs/openapi.json is the
one the server answers."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from server_process import engage_server

pytest.importorskip("fastapi", reason="needs the extra 'serve': pip install 'engage[serve]'")
httpx = pytest.importorskip("httpx", reason="needs the extra 'dev' (httpx)")
pytest.importorskip("schemathesis", reason="needs the extra 'dev' (schemathesis)")

pytest_plugins = ["predict_fixtures"]

EXAMPLES = int(os.environ.get("ENGAGE_SCHEMATHESIS_EXAMPLES", "25"))
SEED = int(os.environ.get("ENGAGE_SCHEMATHESIS_SEED", "1"))
TOKEN = "contract-token"
SCHEMATHESIS = Path(sys.executable).parent / "st"


@pytest.fixture(scope="module")
def server(fast_extra):
    """The fast settings keep each generated request cheap; the contract does not depend on the detector."""
    with engage_server("--detector", "yunet", "--backend", "onnx") as url:
        yield url


def schemathesis_run(url: str, *options: str) -> str:
    """`st run` with every check from the repository's root (schemathesis.toml and its hooks apply); its report."""
    command = [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all", "--seed", str(SEED)]
    command += ["--max-examples", str(EXAMPLES), "--no-color", *options]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    report = done.stdout + done.stderr
    summary = report[report.rfind("SUMMARY") :] if "SUMMARY" in report else report[-3000:]
    print(summary)
    assert done.returncode == 0, report[-6000:]
    return report


def test_schemathesis_finds_no_failure_with_every_check(server):
    report = schemathesis_run(server)
    assert "Tested: 11" in report  # every operation was reached
    assert "No issues found" in report


def test_schemathesis_finds_no_failure_behind_a_token(fast_extra):
    """With --token, the schema declares bearer authentication and every /v1 route answers 401 without it
    (schemathesis's ignored_auth check sends requests without and with a wrong token)."""
    with engage_server("--detector", "yunet", "--backend", "onnx", "--token", TOKEN) as url:
        schema = httpx.get(url + "/openapi.json").json()
        assert "HTTPBearer" in schema["components"]["securitySchemes"]
        assert "401" in schema["paths"]["/v1/images"]["post"]["responses"]
        assert httpx.get(url + "/v1/models").status_code == 401
        report = schemathesis_run(url, "--header", f"Authorization: Bearer {TOKEN}")
    assert "No issues found" in report


def test_the_schema_in_the_docs_is_the_servers(server):
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    served = httpx.get(server + "/openapi.json").json()
    assert committed == served, "docs/openapi.json is out of date: run python scripts/openapi_schema.py"


def test_every_status_code_has_its_body_and_every_file_field_its_constraints(server):
    """Read from the schema itself: what a generated client relies on."""
    schema = httpx.get(server + "/openapi.json").json()
    components = schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert {"413", "500"} <= set(responses), (method, path)  # any body may be too big; any request meet a bug
            for code, response in responses.items():
                if code.startswith(("4", "5")):
                    refs = json.dumps(response["content"]["application/json"]["schema"])
                    assert "#/components/schemas/Error" in refs, (method, path, code)
            if "requestBody" in operation:
                form = operation["requestBody"]["content"]["multipart/form-data"]
                file_field = components[form["schema"]["$ref"].rsplit("/", 1)[1]]["properties"]["file"]
                assert file_field["format"] == "binary" and file_field["minLength"] == 1
                assert form["encoding"]["file"]["contentType"].startswith(("image/jpeg", "video/mp4"))
    assert components["Error"]["properties"]["detail"]["type"] == "string"
    assert components["Face"]["additionalProperties"] is False  # a field the server sends is a field it declares


def _jpeg(rgb) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def test_a_client_generated_from_the_schema_scores_an_image_and_a_video(server, tmp_path, sample_images):
    """openapi-python-client (an independent OpenAPI generator) writes a typed client from the served schema; the
    client's own models read the answers: an image's faces equal Predictor's on the same bytes, a video job runs to
    its CSV, and refusals arrive as Error."""
    pytest.importorskip("openapi_python_client", reason="needs the extra 'dev' (openapi-python-client)")
    (tmp_path / "openapi.json").write_text(httpx.get(server + "/openapi.json").text)
    generator = Path(sys.executable).parent / "openapi-python-client"
    generated = subprocess.run(
        [str(generator), "generate", "--path", "openapi.json", "--meta", "none", "--output-path", "engage_api"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert generated.returncode == 0 and (tmp_path / "engage_api" / "client.py").exists(), generated.stdout
    sys.path.insert(0, str(tmp_path))
    try:
        api = importlib.import_module("engage_api")
        from engage_api.api.images import score_image
        from engage_api.api.server import healthz
        from engage_api.api.videos import job_csv, job_delete, job_status, submit_video
        from engage_api.models import BodyScoreImage, BodySubmitVideo, Error, ImageResult, VideoJob
        from engage_api.types import File

        client = api.Client(base_url=server, timeout=httpx.Timeout(120.0))
        assert healthz.sync(client=client).status == "ok"

        photo = _jpeg(sample_images["group.png"])
        body = BodyScoreImage(file=File(payload=io.BytesIO(photo), file_name="group.jpg", mime_type="image/jpeg"))
        result = score_image.sync(client=client, body=body)
        assert isinstance(result, ImageResult) and len(result.faces) == 3
        from engage.inference.predictor import Predictor
        from engage.io.images import read_image_bytes

        expected = Predictor("engagement", detector="yunet", backend="onnx").predict(read_image_bytes(photo))
        for face, want in zip(result.faces, expected, strict=True):
            assert face.box == want.box.as_list() and face.label == want.label
            assert face.p_engaged == pytest.approx(want.p_engaged, abs=1e-4)
            assert face.cues.yaw == pytest.approx(want.cues.yaw, abs=1e-3)

        refused = score_image.sync(
            client=client, body=BodyScoreImage(file=File(payload=io.BytesIO(b"%PDF-1.4 hello"), file_name="a.pdf"))
        )
        assert isinstance(refused, Error) and "send a JPEG" in refused.detail

        from engage.inference.demo import write_demo_video

        write_demo_video(str(tmp_path / "lecture.mp4"), frames=12)
        video = (tmp_path / "lecture.mp4").read_bytes()
        job = submit_video.sync(
            client=client, body=BodySubmitVideo(file=File(payload=io.BytesIO(video), file_name="lecture.mp4"), every=3)
        )
        assert isinstance(job, VideoJob) and job.state.value in ("queued", "running")
        deadline = time.monotonic() + 120
        while (job := job_status.sync(job_id=job.id, client=client)).state.value in ("queued", "running"):
            assert time.monotonic() < deadline, "the video job did not finish in 120 s"
            time.sleep(0.2)
        assert job.state.value == "done" and job.result.frames_scored == 4
        csv = job_csv.sync_detailed(job_id=job.id, client=client)
        assert csv.status_code == 200 and csv.content.startswith(b"source,frame,")
        assert job_delete.sync_detailed(job_id=job.id, client=client).status_code == 204
        gone = job_status.sync(job_id=job.id, client=client)
        assert isinstance(gone, Error) and "no job" in gone.detail
    finally:
        sys.path.remove(str(tmp_path))
        for name in [name for name in sys.modules if name == "engage_api" or name.startswith("engage_api.")]:
            del sys.modules[name]
