"""The page of `engage serve` in a real browser: a real server process (uvicorn, started here on a free port),
headless Chromium (Debian's /usr/bin/chromium) driven by Playwright. A real photo and a video made from real
photos are uploaded; the faces drawn and the numbers shown are checked against Predictor's; the live mode scores
Chromium's fake camera playing a clip made from a real photo. Screenshots are kept as test artefacts."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, write_image
from server_process import engage_server

pytest.importorskip("fastapi", reason="needs the extra 'serve': pip install 'engage[serve]'")
pytest.importorskip("uvicorn", reason="needs the extra 'serve': pip install 'engage[serve]'")
pytest.importorskip("httpx", reason="needs the extra 'dev' (httpx)")
sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (extra 'dev')")

CHROMIUM = os.environ.get("ENGAGE_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(os.environ.get("ENGAGE_ARTEFACTS", Path(tempfile.gettempdir()) / "engage-serve-screenshots"))

pytest_plugins = ["predict_fixtures"]


@pytest.fixture(scope="module")
def chromium() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Chromium not found at {CHROMIUM} (Debian: apt-get install -y chromium; or set ENGAGE_CHROMIUM)")
    return CHROMIUM


@pytest.fixture(scope="module")
def artefacts() -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of the page are saved in {ARTEFACTS}")
    return ARTEFACTS


@pytest.fixture(scope="module")
def server(engagement_model):
    """`engage serve` in its own process, as a user starts it; stopped (and checked to clean up) at the end."""
    with engage_server("--model", engagement_model) as url:
        yield url


def y4m_clip(path: Path, rgb: np.ndarray, frames: int = 30) -> Path:
    """A Y4M clip (what Chromium's fake camera plays) of a real photo, 640x480."""
    frame = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_AREA)
    yuv = cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as out:
        out.write(b"YUV4MPEG2 W640 H480 F15:1 Ip A1:1 C420jpeg\n")
        out.writelines(b"FRAME\n" + yuv for _ in range(frames))
    return path


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory, astronaut):
    clip = y4m_clip(tmp_path_factory.mktemp("camera") / "astronaut.y4m", astronaut)
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                f"--use-file-for-fake-video-capture={clip}",
            ],
        )
        yield instance
        instance.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.grant_permissions(["camera"], origin=server)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server + "/")
    yield page
    context.close()
    assert errors == [], errors


@pytest.fixture(scope="module")
def plain_predictor(engagement_model):
    from engage.inference.predictor import Predictor

    return Predictor(engagement_model)


def wait_until(condition, timeout: float = 60.0) -> None:
    """Poll from Python: the page's Content-Security-Policy forbids the eval behind Playwright's wait_for_function."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.1)


def table_rows(page, table: str) -> list[list[str]]:
    return page.eval_on_selector_all(
        f"#{table} tbody tr", "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))"
    )


def test_a_dropped_photo_comes_back_with_each_face_drawn_and_scored(
    page, sample_images, plain_predictor, tmp_path, artefacts
):
    from engage.inference.annotate import draw_faces

    photo = write_image(tmp_path / "group.png", sample_images["group.png"])
    assert "Responsible use" in page.inner_text("#notice") and "not for" in page.inner_text("#notice")
    page.set_input_files("#file", str(photo))
    page.wait_for_selector("#image-result:not([hidden])", timeout=60_000)
    faces = plain_predictor.predict(str(photo))
    rows = table_rows(page, "image-faces")
    assert [row[:3] for row in rows] == [[f"#{f.face_id}", f.label, f"{f.p_engaged:.2f}"] for f in faces]
    assert len(rows) == 3
    # the picture shown is the photo with the boxes and scores drawn, pixel for pixel
    shown = page.eval_on_selector("#annotated", "img => [img.naturalWidth, img.naturalHeight, img.src.slice(0, 22)]")
    assert shown == [1024, 512, "data:image/png;base64,"]
    import base64

    from engage.io.images import read_image_bytes

    src = page.get_attribute("#annotated", "src")
    drawn = read_image_bytes(base64.b64decode(src.split(",", 1)[1]))
    assert np.array_equal(drawn, draw_faces(sample_images["group.png"], faces, plain_predictor.positive_class))
    assert "3 faces found" in page.inner_text("#status")
    page.screenshot(path=str(artefacts / "photo.png"), full_page=True)
    # every form control has a label, every control is reachable by keyboard
    unlabelled = page.eval_on_selector_all(
        "input", "inputs => inputs.filter(i => !i.labels || i.labels.length === 0).map(i => i.id)"
    )
    assert unlabelled == []
    page.focus("#file")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "expressions"


def test_a_video_shows_progress_then_the_timeline_and_the_summary_table(page, plain_predictor, tmp_path, artefacts):
    from engage.inference.demo import write_demo_video
    from engage.inference.records import VideoSummary

    video = str(tmp_path / "lecture.mp4")
    write_demo_video(video, frames=30)
    page.set_input_files("#file", video)
    page.wait_for_selector("#video-result:not([hidden])", timeout=90_000)
    summary = VideoSummary(plain_predictor.positive_class, threshold=plain_predictor.decision.threshold)
    for frame in plain_predictor.predict_video(video):
        summary.add(frame)
    expected = [
        [
            f"#{face['face_id']}",
            f"{face['last_s'] - face['first_s']:.1f} s ({face['first_s']:.1f}-{face['last_s']:.1f} s)",
            f"{face['mean_p_engaged']:.2f}",
            f"{round(100 * face['share_engaged'])}%",
            str(face["frames"]),
        ]
        for face in summary.face_list()
    ]
    assert len(expected) == 2
    assert table_rows(page, "video-faces") == expected
    assert page.eval_on_selector("#timeline", "img => img.naturalWidth") == 1000  # the 10x4 in, 100 dpi plot
    assert page.get_attribute("#download-csv", "href").startswith("blob:")
    assert page.get_attribute("#download-csv", "download") == "lecture.faces.csv"
    with page.expect_download() as download:
        page.click("#download-csv")
    csv_lines = Path(download.value.path()).read_text().splitlines()
    assert len(csv_lines) == 1 + sum(face["frames"] for face in summary.face_list())
    page.screenshot(path=str(artefacts / "video.png"), full_page=True)
    if os.environ.get("ENGAGE_UPDATE_SCREENSHOT"):  # the README's picture of the page, made anew on request
        shutil.copyfile(artefacts / "video.png", REPO / "docs" / "serve.png")
    page.click("#delete-job")
    page.wait_for_selector("#video-result", state="hidden")


def test_live_mode_scores_the_camera_and_keeps_the_face_id(page, plain_predictor, artefacts, astronaut):
    import re

    page.click("#live-start")
    wait_until(
        lambda: table_rows(page, "live-faces") and re.search(r"frame ([3-9]|\d\d)", page.inner_text("#live-status"))
    )
    rows = table_rows(page, "live-faces")
    assert len(rows) == 1 and rows[0][0] == "#1"  # one face, the same id from frame to frame
    # the camera shows the same picture in every frame, so the smoothed score is that picture's score (the
    # browser's JPEG encoding of the frames moves it a little)
    expected = plain_predictor.predict(cv2.resize(astronaut, (640, 480), interpolation=cv2.INTER_AREA))[0]
    assert float(rows[0][2]) == pytest.approx(expected.p_engaged, abs=0.05)
    overlay = page.eval_on_selector("#live-overlay", "c => [c.width, c.height]")
    assert overlay == [640, 480]
    page.screenshot(path=str(artefacts / "live.png"), full_page=True)
    page.click("#live-stop")
    wait_until(lambda: "stopped" in page.inner_text("#live-status"))


def test_the_page_and_the_api_docs_load_nothing_from_outside_and_fit_a_phone(browser, server, artefacts):
    """Offline: every request of the page and of /docs (Swagger UI) goes to the server itself. On a phone-sized
    screen the page needs no sideways scrolling and its file picker is on screen."""
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    requested = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server + "/")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert page.is_visible("label[for=file]")
    page.screenshot(path=str(artefacts / "phone.png"), full_page=True)
    page.goto(server + "/docs")
    page.wait_for_selector('.opblock-summary-path[data-path="/v1/videos"]', timeout=30_000)  # Swagger UI drew it
    context.close()
    outside = [url for url in requested if not url.startswith((server, "data:", "blob:"))]
    assert outside == [] and any(url.endswith("swagger-ui-bundle.js") for url in requested)
