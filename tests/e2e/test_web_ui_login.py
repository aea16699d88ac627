"""The web UI of a server started with --auth-config, in a real browser: a login form,
and a page that calls the API as the user who logged in (with that user's permissions)."""

import json
import re

import pytest

from tests.e2e.test_web_ui import _new_page, browser  # noqa: F401  (a fixture)
from tests.servers import start_local

pytestmark = pytest.mark.slow

CONFIG = {
    "auth_config": {"algorithm": "HS256", "secret_key": "a-secret-for-the-browser-test-0123456789",
                    "token_expire_in_minutes": 30},
    "user_config": [
        {"username": "lister", "password": "lister-pw", "permissions": ["models:list"], "api_keys": []},
    ],
}


@pytest.fixture(scope="module")
def secure_ui(tmp_path_factory):
    folder = tmp_path_factory.mktemp("secure-ui")
    path = folder / "auth.json"
    path.write_text(json.dumps(CONFIG))
    daemon = start_local(str(folder), None, "--auth-config", str(path), ui=True)
    try:
        yield daemon
    finally:
        assert daemon.stop() == 0, daemon.log()[-3000:]


def test_login_form_then_the_page_acts_with_the_users_permissions(browser, secure_ui):  # noqa: F811
    from playwright.sync_api import expect

    context, page = _new_page(browser)
    try:
        page.goto(secure_ui.endpoint + "/", wait_until="domcontentloaded")
        page.get_by_label("username").fill("lister")
        page.get_by_label("password").fill("wrong")
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Incorrect Credentials")).to_be_visible()
        page.get_by_label("username").fill("lister")  # the form empties it after a failure
        page.get_by_label("password").fill("lister-pw")
        page.get_by_role("button", name="Login").click()
        expect(page).to_have_url(re.compile(r"/ui/$"))
        # the catalogue came through the API with the lister's token (models:list) ...
        expect(page.locator("#launch-quantization input")).not_to_have_value("")
        # ... and a launch is refused: the lister may not start models
        page.locator("#launch-button").click()
        expect(page.locator("#launch-status")).to_contain_text("models:start")
    finally:
        context.close()
