"""The documentation page in a real browser: headless Chromium (Debian's) on xorest under
gunicorn against the simulator. The page lists every operation, authorises with a token
(cookie, then Bearer) and "Try it out" of GET /rest/v0/vms shows the pool's VMs.

A screenshot is kept under the test's tmp path, and copied to ``$ARTIFACTS_DIR`` when set
(``make test`` sets it to ``build/artifacts``).
"""
import os
import shutil
import tempfile

import pytest
import requests

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: Not an XOREST_* variable: xorest refuses unknown settings of that prefix.
ARTIFACTS = os.environ.get("ARTIFACTS_DIR")

pytestmark = [pytest.mark.stack, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed and could not be (make test installs Debian's chromium as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    profile = tempfile.mkdtemp(prefix="xorest-chromium-")
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=ARGS, viewport={"width": 1400, "height": 1000},
            timeout=60000)
        context.set_default_timeout(30000)
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def _keep(path, name):
    if ARTIFACTS:
        os.makedirs(ARTIFACTS, exist_ok=True)
        shutil.copy(path, os.path.join(ARTIFACTS, name))


def _authorize(page, scheme_text, token):
    page.locator("button.authorize").first.click()
    box = page.locator(".modal-ux .auth-container").filter(has_text=scheme_text)
    box.locator("input").first.fill(token)
    box.locator("button.authorize").click()
    page.locator(".modal-ux button.btn-done").first.click()


def _logout(page, scheme_text):
    page.locator("button.authorize").first.click()
    page.locator(".modal-ux .auth-container").filter(has_text=scheme_text).locator("button", has_text="Logout").click()
    page.locator(".modal-ux button.btn-done").first.click()


def _execute(page, operation):
    """Execute the operation's "Try it out"; the request the browser sent and the rendered answer."""
    _scroll_through(page, until=LIST_VMS)  # the Authorize dialog may have scrolled it away
    with page.expect_request(lambda r: "/rest/v0/vms?" in r.url) as sent:
        operation.locator("button.execute").click()
    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    body = operation.locator(".live-responses-table tbody .response-col_description pre").first
    return sent.value.all_headers(), status.inner_text().strip(), body.inner_text()


LIST_VMS = "#operations-vms-list_collection_vms"
RENDERED_OPERATIONS = """blocks => blocks.map(block => [
    block.querySelector('.opblock-summary-method').innerText.trim(),
    block.querySelector('.opblock-summary-path').getAttribute('data-path')])"""


def _scroll_through(page, until=None):
    """Scroll the page from the top, a screen at a time, and return every operation rendered
    on the way (Swagger UI 5.33 and later render long lists of operations only where they are
    on screen); with ``until``, stop once that element is in the page."""
    seen, top = set(), 0
    while True:
        page.evaluate(f"window.scrollTo(0, {top})")
        page.wait_for_timeout(150)
        seen |= set(map(tuple, page.eval_on_selector_all(".opblock", RENDERED_OPERATIONS)))
        if until is not None and page.locator(until).count():
            return seen
        if top > page.evaluate("document.documentElement.scrollHeight"):
            assert until is None, f"{until} is not in the page"
            return seen
        top += 600


def test_the_docs_page_lists_operations_and_tries_them(gateway, browser, tmp_path):
    document = requests.get(f"{gateway.url}/rest/v0/openapi.json", timeout=30).json()
    expected = sorted((method.upper(), path) for path, item in document["paths"].items() for method in item)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("requestfailed", lambda request: errors.append(f"{request.url}: {request.failure}"))
    page.goto(f"{gateway.url}/rest/v0/docs")
    page.wait_for_selector(".opblock")
    assert page.locator(".info .title").inner_text().startswith("xorest")
    # every operation once at least (an operation is shown under each of its tags)
    assert sorted(_scroll_through(page)) == expected

    # Authorize with the token as the authenticationToken cookie, then "Try it out"
    page.evaluate("window.scrollTo(0, 0)")
    _authorize(page, "authenticationToken", gateway.token)
    _scroll_through(page, until=LIST_VMS)
    operation = page.locator(LIST_VMS)
    operation.locator(".opblock-summary").click()
    operation.locator("button.try-out__btn").click()
    fields = operation.locator("tr[data-param-name='fields'] input")
    fields.fill("name_label,power_state")
    headers, status, body = _execute(page, operation)
    assert status == "200", body[:500]
    assert f"authenticationToken={gateway.token}" in headers.get("cookie", "")
    assert "authorization" not in headers
    curl = operation.locator(".curl-command").inner_text()
    assert "authenticationToken=" in curl  # the curl line to copy has the cookie
    names = [vm["name_label"] for vm in gateway.get("/rest/v0/vms?fields=name_label").json()]
    assert names and all(name in body for name in names[:5]), body[:500]
    assert '"power_state"' in body and "/rest/v0/vms/" in body
    operation.locator(".live-responses-table").first.scroll_into_view_if_needed()
    shot = tmp_path / "docs-try-it-out.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10000
    _keep(shot, "docs-try-it-out.png")

    # the same with Bearer: the page's cookie is gone, the header carries the token
    _logout(page, "authenticationToken")
    _authorize(page, "Bearer", gateway.token)
    headers, status, body = _execute(page, operation)
    assert status == "200", body[:500]
    assert headers.get("authorization") == f"Bearer {gateway.token}"
    assert "authenticationToken" not in headers.get("cookie", "")
    assert names[0] in body

    # the legacy token cookie
    _logout(page, "Bearer")
    _authorize(page, "Name: token", gateway.token)
    headers, status, body = _execute(page, operation)
    assert status == "200", body[:500]
    assert f"token={gateway.token}" in headers.get("cookie", "") and "authorization" not in headers
    assert "authenticationToken" not in headers.get("cookie", "")
    _logout(page, "Name: token")

    # and without credentials: the API's 401, rendered
    headers, status, body = _execute(page, operation)
    assert status == "401" and "authentication required" in body
    assert not errors, errors
    page.close()
