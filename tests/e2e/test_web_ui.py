"""The web UI in a real browser: headless Chromium (Debian's, driven by Python
Playwright) against a real xinference-local with the embedded Gemma model.

Screenshots for the README: `XINFERENCE_SCREENSHOTS_DIR=assets python -m pytest
tests/e2e/test_web_ui.py` writes web_ui_launch.png, web_ui_chat.png and
web_ui_arena.png and web_ui_replicas.png there (otherwise they go to a temporary folder).
"""

import os
import re
import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import GEMMA_UID
from tests.servers import start_local

CHROMIUM = os.environ.get("XINFERENCE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_MODEL = "ui-gemma"  # launched through the Launch tab
GONE_MODEL = "gone-gemma"  # terminated behind the page's back
SCALED_MODEL = "scaled-gemma"  # given a replica and relieved of it in the replicas panel
WAIT_MS = 30_000  # any one wait in the page
ANSWER_MS = 90_000  # a short answer on a busy 2-core machine
MAX_TOKENS = "16"

pytestmark = pytest.mark.slow


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI must run the browser tests)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    found = os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)
    _need(bool(found), f"no Chromium at {CHROMIUM}: apt-get install -y chromium (scripts/test.sh does)")
    for module in ("playwright", "gradio"):
        try:
            __import__(module)
        except ImportError:
            _need(False, f"{module} is not installed: pip install -e '.[dev]'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    target = os.environ.get("XINFERENCE_SCREENSHOTS_DIR")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module", autouse=True)
def _leave_only_the_shared_model(local):
    """The session's cluster is shared with other test files: take our models away."""
    yield
    for uid in (UI_MODEL, GONE_MODEL, SCALED_MODEL, "bad-path"):
        requests.delete(f"{local.endpoint}/v1/models/{uid}", timeout=60)


def _new_page(browser, locale="en-US"):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale=locale)
    context.set_default_timeout(WAIT_MS)
    return context, context.new_page()


@pytest.fixture
def page(browser, local):
    context, page = _new_page(browser)
    try:
        yield page
    finally:
        context.close()


def open_ui(page, endpoint):
    """Opens / (which redirects to /ui/) and waits until the page has loaded its data."""
    from playwright.sync_api import expect

    # never "networkidle": the page keeps a heartbeat stream open
    page.goto(endpoint + "/", wait_until="domcontentloaded")
    expect(page).to_have_url(re.compile(r"/ui/$"))
    expect(page.locator("#launch-quantization input")).not_to_have_value("")


def choose(page, elem_id, option):
    from playwright.sync_api import expect

    box = page.locator(f"#{elem_id} input")
    box.click()
    page.locator(f"#{elem_id}").get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)
    box.blur()


def set_params(page, prefix, system_prompt=None):
    page.locator(f"#{prefix}-params").get_by_text("Parameters").click()
    from playwright.sync_api import expect

    for name, value in (("max-tokens", MAX_TOKENS), ("temperature", "0")):
        box = page.locator(f"#{prefix}-{name} input[type=number]")
        slider = page.locator(f"#{prefix}-{name} input[type=range]")
        # The slider takes a typed value when the box loses focus, but on a busy machine
        # a typed value was sometimes lost (the message then went with 256 tokens, not
        # 16): type it again until the slider shows it.
        for _ in range(20):
            box.fill(value)
            box.press("Tab")
            page.wait_for_timeout(250)
            if slider.input_value() == value:
                break
        expect(slider).to_have_value(value)
    if system_prompt is not None:
        page.locator(f"#{prefix}-system textarea").fill(system_prompt)


def screenshot(page, path):
    page.mouse.move(0, 0)  # no hover or focus look on the last button clicked
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path))


def open_tab(page, name):
    page.get_by_role("tab", name=name).click()


def ensure_model(endpoint, uid):
    if requests.get(f"{endpoint}/v1/models/{uid}", timeout=10).status_code == 200:
        return
    r = requests.post(endpoint + "/v1/models", timeout=180,
                      json={"model_name": "gemma-3", "model_uid": uid, "n_ctx": 1024})
    assert r.status_code == 200, r.text


def watch(page, selector):
    """Records (time, text length) of `selector` on every change, to see a stream arrive."""
    page.evaluate(
        """sel => {
            window.__seen = window.__seen || {};
            const seen = window.__seen[sel] = [];
            const el = document.querySelector(sel);
            new MutationObserver(() => seen.push([performance.now(), el.innerText.length]))
                .observe(el, {subtree: true, childList: true, characterData: true});
        }""",
        selector,
    )


def seen(page, selector):
    return page.evaluate("sel => window.__seen[sel]", selector)


def bot_messages(page, chatbot_id):
    return page.locator(f"#{chatbot_id} [data-testid=bot]")


SPEED = re.compile(r"\d+\.\d tokens/s · first token after \d+\.\d\d s · (\d+) tokens")


def test_root_redirects_to_the_ui(local):
    r = requests.get(local.endpoint + "/", allow_redirects=False, timeout=10)
    assert r.status_code == 307 and r.headers["location"] == "ui/"
    assert requests.get(local.endpoint + "/ui/", timeout=10).status_code == 200


def test_no_ui_flag(log_dir, local):
    assert "Web UI at http://127.0.0.1:" in local.log()
    daemon = start_local(log_dir, None, "--no-ui")
    try:
        root = requests.get(daemon.endpoint + "/", allow_redirects=False, timeout=10)
        assert root.status_code == 307 and root.headers["location"] == "docs"  # never a bare 405
        assert requests.get(daemon.endpoint + "/", timeout=10).status_code == 200
        assert requests.get(daemon.endpoint + "/ui/", timeout=10).status_code == 404
        assert requests.get(daemon.endpoint + "/v1/models", timeout=10).status_code == 200
    finally:
        assert daemon.stop() == 0


def test_launch_tab_launches_the_embedded_model(page, local, shots):
    from playwright.sync_api import expect

    open_ui(page, local.endpoint)
    expect(page.locator("#launch-family input")).to_have_value("gemma-3")
    # the cascade: another engine offers other formats, and back
    choose(page, "launch-engine", "Transformers")
    page.locator("#launch-format input").click()
    expect(page.get_by_role("option", name="pytorch", exact=True)).to_be_visible()
    page.keyboard.press("Escape")
    choose(page, "launch-engine", "llama.cpp")
    for elem_id, value in (("format", "ggufv2"), ("size", "0_27"), ("quantization", "q4_k_m")):
        expect(page.locator(f"#launch-{elem_id} input")).to_have_value(value)
    page.locator("#launch-uid textarea").fill(UI_MODEL)
    page.locator("#launch-kwargs textarea").fill("n_ctx=1024")

    page.locator("#launch-button").click()
    status = page.locator("#launch-status")
    expect(status).to_contain_text(f"Launching {UI_MODEL}")
    expect(status).to_contain_text(f"{UI_MODEL} is running", timeout=180_000)
    row = page.locator(".xinf-model", has_text=UI_MODEL)
    expect(row).to_contain_text("READY")
    expect(row.get_by_role("button", name="Terminate")).to_be_visible()
    expect(page.locator(".xinf-model", has_text=GEMMA_UID).first).to_be_visible()
    screenshot(page, shots / "web_ui_launch.png")

    desc = requests.get(f"{local.endpoint}/v1/models/{UI_MODEL}", timeout=10).json()
    assert desc["status"] == "READY" and desc["model_engine"] == "llama.cpp"
    assert desc["context_length"] == 1024  # the extra engine argument reached the engine


def test_chat_tab_streams_and_shows_the_speed(page, local, shots):
    from playwright.sync_api import expect

    open_ui(page, local.endpoint)
    open_tab(page, "Chat")
    choose(page, "chat-model", GEMMA_UID)
    set_params(page, "chat", system_prompt="You are a friendly assistant.")
    watch(page, "#chat-history")
    page.locator("#chat-input textarea").fill("Write one sentence about the sea.")
    page.locator("#chat-input textarea").press("Enter")

    status = page.locator("#chat-status")
    expect(status).to_contain_text("tokens/s", timeout=ANSWER_MS)
    speed = SPEED.search(status.inner_text())
    assert speed and 1 <= int(speed.group(1)) <= int(MAX_TOKENS), status.inner_text()
    answer = bot_messages(page, "chat-history")
    expect(answer).to_have_count(1)
    assert answer.first.inner_text().strip()
    lengths = {n for _, n in seen(page, "#chat-history")}
    assert len(lengths) >= 3, f"the answer did not arrive in pieces: {lengths}"
    screenshot(page, shots / "web_ui_chat.png")

    page.locator("#chat-clear").click()
    expect(answer).to_have_count(0)
    expect(status).not_to_contain_text("tokens/s")


def test_arena_streams_two_models_side_by_side(page, local, shots):
    from playwright.sync_api import expect

    ensure_model(local.endpoint, UI_MODEL)
    open_ui(page, local.endpoint)
    open_tab(page, "Arena")
    choose(page, "arena-model-0", GEMMA_UID)
    choose(page, "arena-model-1", UI_MODEL)
    choose(page, "arena-model-2", "(none)")
    set_params(page, "arena")
    for i in (0, 1):
        watch(page, f"#arena-history-{i}")
    page.locator("#arena-input textarea").fill("The best thing about mornings is")
    page.locator("#arena-send").click()

    for i in (0, 1):
        status = page.locator(f"#arena-status-{i}")
        expect(status).to_contain_text("tokens/s", timeout=ANSWER_MS)
        assert SPEED.search(status.inner_text()), status.inner_text()
        expect(bot_messages(page, f"arena-history-{i}")).to_have_count(1)
    expect(bot_messages(page, "arena-history-2")).to_have_count(0)
    # side by side: each column was still changing after the other one had started
    a, b = seen(page, "#arena-history-0"), seen(page, "#arena-history-1")
    assert a and b
    assert a[0][0] < b[-1][0] and b[0][0] < a[-1][0], (a, b)
    screenshot(page, shots / "web_ui_arena.png")

    page.locator("#arena-clear").click()
    for i in (0, 1):
        expect(bot_messages(page, f"arena-history-{i}")).to_have_count(0)
        expect(page.locator(f"#arena-status-{i}")).not_to_contain_text("tokens/s")


def test_terminate_button_stops_the_model(page, local):
    from playwright.sync_api import expect

    ensure_model(local.endpoint, UI_MODEL)
    open_ui(page, local.endpoint)
    row = page.locator(".xinf-model", has_text=UI_MODEL)
    row.get_by_role("button", name="Terminate").click()
    expect(page.locator("#launch-status")).to_contain_text(f"{UI_MODEL} was terminated")
    expect(row).to_have_count(0)
    expect(page.locator(".xinf-model", has_text=GEMMA_UID).first).to_be_visible()
    assert requests.get(f"{local.endpoint}/v1/models/{UI_MODEL}", timeout=10).status_code == 404


def test_replicas_panel_adds_and_removes_a_replica_and_shows_the_events(page, local, shots):
    from playwright.sync_api import expect

    uid = SCALED_MODEL
    ensure_model(local.endpoint, uid)
    open_ui(page, local.endpoint)
    page.locator(".xinf-model", has_text=uid).get_by_role("button", name="Replicas").click()
    expect(page.locator("#replicas-model input")).to_have_value(uid)
    health = page.locator("#replicas-health")
    expect(health).to_contain_text(f"{uid} · status READY · 1 replica(s) · restarts: 0")
    replicas = page.locator(".xinf-replica")
    expect(replicas).to_have_count(1)
    expect(replicas.first).to_contain_text("ready")

    page.locator("#replicas-add").click()
    status = page.locator("#replicas-status")
    expect(status).to_contain_text(f"Adding a replica to {uid}")
    expect(status).to_contain_text(f"{uid}-1 added: {uid} has 2 replica(s)", timeout=180_000)
    expect(replicas).to_have_count(2)
    new = page.locator(".xinf-replica", has_text=f"{uid}-1")
    expect(new).to_contain_text("ready")
    expect(new).to_contain_text("127.0.0.1:")  # its worker
    events = page.locator("#replicas-events")
    expect(events).to_contain_text("added")
    expect(events).to_contain_text(f"{uid}-1")
    # the running table follows: its replica count
    expect(page.locator(".xinf-model", has_text=uid)).to_contain_text("READY")
    assert requests.get(f"{local.endpoint}/v1/models/{uid}", timeout=10).json()["replica"] == 2
    page.locator("#replicas-panel").screenshot(path=str(shots / "web_ui_replicas.png"))

    new.get_by_role("button", name="Remove").click()
    expect(status).to_contain_text(f"{uid}-1 removed: {uid} has 1 replica(s)", timeout=60_000)
    expect(replicas).to_have_count(1)
    expect(replicas.first).to_contain_text(f"{uid}-0")
    expect(events).to_contain_text("removed")
    assert requests.get(f"{local.endpoint}/v1/models/{uid}", timeout=10).json()["replica"] == 1

    # the server refuses to remove the last one: its reason, not a traceback
    replicas.first.get_by_role("button", name="Remove").click()
    expect(status).to_contain_text("is the last replica", timeout=60_000)
    expect(status).to_contain_text("terminate the model instead")
    expect(replicas).to_have_count(1)
    assert "Traceback" not in page.content()


def test_chat_with_a_model_terminated_meanwhile_says_so(page, local):
    from playwright.sync_api import expect

    uid = GONE_MODEL
    ensure_model(local.endpoint, uid)
    open_ui(page, local.endpoint)
    open_tab(page, "Chat")
    choose(page, "chat-model", uid)
    # someone else terminates it while the page still offers it
    assert requests.delete(f"{local.endpoint}/v1/models/{uid}", timeout=60).status_code == 200
    page.locator("#chat-input textarea").fill("Hello?")
    page.locator("#chat-input textarea").press("Enter")
    status = page.locator("#chat-status")
    expect(status).to_contain_text("not running", timeout=WAIT_MS)
    expect(status).to_contain_text(uid)
    assert "Traceback" not in page.content()


def test_launch_failure_is_readable(page, local):
    from playwright.sync_api import expect

    open_ui(page, local.endpoint)
    page.locator("#launch-uid textarea").fill("bad-path")
    page.locator("#launch-model-path textarea").fill("/nonexistent/model.gguf")
    page.locator("#launch-button").click()
    status = page.locator("#launch-status")
    expect(status).to_contain_text("Launching bad-path failed", timeout=60_000)
    expect(status).to_contain_text("/nonexistent/model.gguf")
    assert "Traceback" not in page.content()
    expect(page.locator(".xinf-model", has_text="bad-path")).to_have_count(0)


def test_chinese_locale_and_the_language_switch(browser, local):
    from playwright.sync_api import expect

    context, page = _new_page(browser, locale="zh-CN")
    try:
        open_ui(page, local.endpoint)
        for name in ("启动模型", "聊天", "竞技场"):
            expect(page.get_by_role("tab", name=name)).to_be_visible()
        expect(page.get_by_text("模型系列", exact=True)).to_be_visible()
        expect(page.locator("#launch-button")).to_have_text("启动")
        expect(page.locator(".xinf-head")).to_contain_text("状态")
        expect(page.get_by_text("副本与事件", exact=True)).to_be_visible()
        page.get_by_text("English", exact=True).click()
        expect(page.get_by_role("tab", name="Launch model")).to_be_visible()
        expect(page.locator("#launch-button")).to_have_text("Launch")
        expect(page.locator(".xinf-head")).to_contain_text("Status")
        page.get_by_text("简体中文", exact=True).click()
        expect(page.get_by_role("tab", name="聊天")).to_be_visible()
    finally:
        context.close()


def test_launch_by_name_shows_the_download_and_cancels_it(browser, log_dir, tmp_path, shots):
    """A catalogue model the worker lacks: the form shows MB, MB/s and ETA while it
    downloads from a (fake) hub, and Cancel stops the launch and leaves nothing."""
    from playwright.sync_api import expect

    from tests.fake_hub import FakeHub
    from xinference.model.llm.launch import plan_launch

    gguf = plan_launch("gemma-3").resolve_weights()
    with FakeHub() as hub:
        hub.add_repo("Qwen/Qwen2.5-0.5B-Instruct-GGUF", {"qwen2.5-0.5b-instruct-q4_k_m.gguf": gguf})
        hub.throttle(8_000_000)  # ~30 s for 250 MB: time to look and to cancel
        daemon = start_local(log_dir, {**hub.env, "XINFERENCE_HOME": str(tmp_path / "home")}, ui=True)
        context, page = _new_page(browser)
        try:
            open_ui(page, daemon.endpoint)
            choose(page, "launch-family", "qwen2.5-instruct")
            choose(page, "launch-engine", "llama.cpp")
            choose(page, "launch-format", "ggufv2")
            choose(page, "launch-size", "0_5")
            choose(page, "launch-quantization", "q4_k_m")
            page.locator("#launch-uid textarea").fill("downloading")
            page.locator("#launch-button").click()
            status = page.locator("#launch-status")
            moving = re.compile(r"downloading [1-9][\d.]* / 253\.1 MB, [1-9][\d.]* MB/s, ETA \d+:\d\d")
            expect(status).to_contain_text(moving, timeout=60_000)
            screenshot(page, shots / "web_ui_download.png")
            page.locator("#launch-cancel").click()
            expect(status).to_contain_text("Launch of downloading cancelled", timeout=30_000)
            gone = requests.get(daemon.endpoint + "/v1/models/downloading", timeout=10)
            assert gone.status_code == 404
            assert "downloading" not in requests.get(daemon.endpoint + "/v1/models", timeout=10).json()["data"]
        finally:
            context.close()
            daemon.stop()
