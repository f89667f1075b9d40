"""The webapp in real headless Chromium (Debian's), with a fake microphone, against the real stack."""

import shutil
import subprocess
import wave
from pathlib import Path

import pytest
from conftest import USERS_DOC
from orchestrator_helpers import LiveServer, make_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture(scope="module")
def question_wav(tmp_path_factory):
    """The spoken question as Chromium's fake microphone plays it (48 kHz mono, a pause first)."""
    folder = tmp_path_factory.mktemp("mic")
    raw, out = folder / "raw.wav", folder / "question.wav"
    subprocess.run(["espeak-ng", "-s", "130", "-w", str(raw), "What is the user ID of the root user?"], check=True)
    subprocess.run(["sox", str(raw), "-r", "48000", "-c", "1", "-b", "16", str(out), "pad", "0.3", "1.5"], check=True)
    with wave.open(str(out)) as w:
        seconds = w.getnframes() / w.getframerate()
    return out, seconds


@pytest.fixture(scope="module")
def stack(triton, tmp_path_factory):
    dist = ROOT / "webapp" / "dist" / "index.html"
    if not dist.is_file():
        pytest.fail("webapp/dist is not built; `make test` builds it (cd webapp && npm run build)")
    live = LiveServer(make_settings(triton, tmp_path_factory.mktemp("e2e-index"))).start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser(question_wav):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Debian's chromium is not installed; `make test` installs it")
    wav, _ = question_wav
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=chromium, headless=True, args=[*CHROMIUM_FLAGS, f"--use-file-for-fake-audio-capture={wav}"]
        )
        yield b
        b.close()


@pytest.fixture
def page(browser, stack):
    # bypass_csp lets the test evaluate its probes; the page itself runs under the real CSP otherwise.
    context = browser.new_context(viewport={"width": 1200, "height": 860}, bypass_csp=True)
    context.grant_permissions(["microphone"], origin=stack.base)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(stack.base + "/")
    page.get_by_text("connected", exact=True).wait_for(timeout=15000)
    yield page
    assert not errors, errors
    context.close()


def ensure_document(page):
    if page.locator(".documents li").count() == 0:
        page.set_input_files("#file-input", str(USERS_DOC))
    page.locator(".documents li", has_text="Users and Groups").wait_for(timeout=60000)


def test_spoken_turn_in_the_browser(page, question_wav):
    _, seconds = question_wav
    ensure_document(page)
    talk = page.get_by_role("button", name="Talk")
    box = talk.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.locator("#state[data-state='listening']").wait_for(timeout=5000)
    page.wait_for_timeout(int(seconds * 1000))
    page.mouse.up()

    user = page.locator(".bubble.user").last
    assistant = page.locator(".bubble.assistant").last
    page.locator("#waterfall:not([hidden])").wait_for(timeout=90000)
    assert "root" in user.inner_text().lower()
    assert assistant.locator(".text").inner_text().strip()
    citation = assistant.locator(".citations summary").first
    assert "Users and Groups" in citation.inner_text()
    citation.click()  # expands to the passage text
    assert assistant.locator(".citations details[open] p").first.inner_text().strip()
    assert page.locator(".wf-row").count() >= 4
    page.wait_for_function("window.voicebot.chunksPlayed > 0", timeout=30000)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "webapp-answered-turn.png"), full_page=True)


def test_typed_question_without_speech(page):
    ensure_document(page)
    page.fill("#ask-input", "Which user is the superuser?")
    page.uncheck("#ask-speak")
    page.press("#ask-input", "Enter")
    page.locator("#waterfall:not([hidden])").wait_for(timeout=90000)
    assistant = page.locator(".bubble.assistant").last
    assert assistant.locator(".text").inner_text().strip()
    assert assistant.locator(".citations li").count() >= 1
    assert page.evaluate("window.voicebot.stats.audioChunksReceived") == 0


def test_barge_in_stops_playback_and_the_answer(page):
    ensure_document(page)
    page.fill("#ask-input", "Which user is the superuser?")
    page.press("#ask-input", "Enter")
    page.locator("#state[data-state='speaking']").wait_for(timeout=120000)
    page.keyboard.press("Escape")
    page.locator(".bubble.assistant.interrupted").wait_for(timeout=500)
    assert page.evaluate("window.voicebot.playing") is False  # stopped at once, queued audio flushed
    assert page.get_attribute("#state", "data-state") == "idle"
    text = page.locator(".bubble.assistant .text").last.inner_text()
    received = page.evaluate("window.voicebot.stats.audioChunksReceived")
    page.wait_for_timeout(1500)
    assert page.locator(".bubble.assistant .text").last.inner_text() == text  # nothing more of it arrived
    assert page.evaluate("window.voicebot.stats.audioChunksReceived") == received
    assert page.evaluate("window.voicebot.playing") is False


def test_narrow_screen_and_keyboard_only(page):
    page.set_viewport_size({"width": 360, "height": 740})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360  # no horizontal scrolling at 360 px
    reached = []
    for _ in range(20):  # keyboard only: Tab through the page until the Talk button has focus
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
        if reached[-1] == "talk":
            break
    assert reached[-1] == "talk", reached
