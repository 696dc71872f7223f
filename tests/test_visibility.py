"""Seeing every event (issue 14): the delivery log, event lookup, the OpenAPI document, tracing
spans, and the web console in a real browser (Debian's Chromium through its WebDriver)."""

import json
import shutil

import pytest
import requests
from openapi_spec_validator import validate

from conftest import FAST_RETRIES, ROOT, sqs_hook, wait_until, webhook_hook
from receiver import Answer, Receiver

SCREENSHOTS = ROOT / "target" / "console-screenshots"


def hook_status(server, hook_id):
    return server.request("GET", f"/v1/hooks/{hook_id}").json()["hook"]


def trace(server, event_id):
    r = server.request("GET", f"/v1/events/{event_id}")
    assert r.status_code == 200, r.text
    return {h["hook_id"]: h for h in r.json()["hooks"]}, r.json()["event"]


def test_every_attempt_is_recorded_and_each_event_can_be_traced(server_factory, moto):
    server = server_factory(config=FAST_RETRIES)
    failures = {"left": 2}

    def behaviour(request):
        if json.loads(request.body)["id"] == "flaky" and failures["left"] > 0:
            failures["left"] -= 1
            return Answer(500, body=b"not yet: " + b"x" * 2000)
        return Answer(200)

    receiver = Receiver(behaviour).start()
    queue = moto.create_queue()
    server.set_hooks([
        webhook_hook(receiver.url, id="web"),
        webhook_hook(receiver.url, id="reactions", event_types=["reaction.new"]),
        sqs_hook(queue, id="queue"),
    ])
    ids = server.send_events([{"id": "flaky", "type": "message.new"}] +
                             [{"id": f"ok-{i}", "type": "message.new"} for i in range(24)])
    wait_until(lambda: trace(server, "flaky")[0]["web"]["state"] == "delivered", what="the flaky event delivered")
    moto.drain(queue, len(ids))
    wait_until(lambda: hook_status(server, "queue")["lag"]["events"] == 0, what="the queue hook done")

    hooks, event = trace(server, "flaky")
    assert event["id"] == "flaky" and event["payload"]["type"] == "message.new"
    web = hooks["web"]
    assert web["matched"] is True
    assert [a["outcome"] for a in web["attempts"]] == ["retrying", "retrying", "delivered"], web
    first = web["attempts"][0]
    assert first["http_status"] == 500 and first["code"] == "HTTP 500"
    assert first["response"].startswith("not yet") and len(first["response"]) == 1024, "the first 1 KB"
    assert first["duration_ms"] >= 0 and first["events"] == [{"event_id": "flaky", "attempt": 1}]
    assert web["attempts"][2]["events"] == [{"event_id": "flaky", "attempt": 3}]
    assert hooks["reactions"] == {**hooks["reactions"], "matched": False, "state": "filtered_out", "attempts": []}
    assert hooks["queue"]["state"] == "delivered"

    # A batch is one record that answers for each of its events.
    queue_log = server.request("GET", "/v1/hooks/queue/attempts").json()["attempts"]
    assert sum(len(a["events"]) for a in queue_log) == 25 and len(queue_log) <= 3, queue_log
    assert trace(server, "ok-17")[0]["queue"]["attempts"][0]["outcome"] == "delivered"

    # The hook's log: newest first, filtered by outcome, paged.
    log = server.request("GET", "/v1/hooks/web/attempts").json()
    assert log["attempts"][0]["id"] > log["attempts"][-1]["id"]
    retrying = requests.get(f"{server.url}/v1/hooks/web/attempts", params={"api_key": server.key, "outcome": "retrying"},
                            headers=server.headers(), timeout=10).json()["attempts"]
    assert [a["outcome"] for a in retrying] == ["retrying", "retrying"]
    page = requests.get(f"{server.url}/v1/hooks/web/attempts", params={"api_key": server.key, "limit": 1},
                        headers=server.headers(), timeout=10).json()
    assert len(page["attempts"]) == 1 and page["next"] == page["attempts"][0]["id"]
    bad = requests.get(f"{server.url}/v1/hooks/web/attempts", params={"api_key": server.key, "outcome": "lost"},
                       headers=server.headers(), timeout=10)
    assert bad.status_code == 400 and "outcome" in bad.json()["exception_fields"]

    # Unknown events and other apps' hooks are not found.
    missing = server.request("GET", "/v1/events/never-sent")
    assert missing.status_code == 404 and missing.json()["code"] == 16
    assert server.request("GET", "/v1/hooks/nope/attempts").status_code == 404
    receiver.stop()


def test_tracing_spans_follow_one_event_through_the_log(server):
    receiver = Receiver().start()
    server.set_hooks([webhook_hook(receiver.url, id="traced")])
    server.send_events([{"id": "follow-me-42", "type": "message.new"}])
    wait_until(lambda: trace(server, "follow-me-42")[0]["traced"]["state"] == "delivered", what="delivery")
    lines = [l for l in server.log().splitlines() if "follow-me-42" in l]
    assert any("delivery_round" in l and "attempt" in l and "hook_id" in l for l in lines), "\n".join(lines)
    receiver.stop()


def test_the_openapi_document_validates_and_describes_the_routes_that_exist(server):
    doc = requests.get(f"{server.url}/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.1")
    validate(doc)  # the openapi-spec-validator package
    for path, item in doc["paths"].items():
        concrete = path.replace("{hook_id}", "h").replace("{event_id}", "e").replace("{asset}", "app.js")
        for method in item:
            r = server.request(method.upper(), concrete, raw="{}")
            # The router's fallbacks answer exactly these for paths and methods it does not have.
            fallback = r.status_code == 404 and r.json().get("message") == "Not Found" or r.status_code == 405
            assert not fallback, f"{method.upper()} {path} is documented but not routed: {r.status_code} {r.text}"
    assert "/v1/events/{event_id}" in doc["paths"] and "/v1/hooks/{hook_id}/attempts" in doc["paths"]
    assert doc["components"]["schemas"]["Error"]["required"] == ["code", "message", "StatusCode"]


# --- the console, in a real browser ------------------------------------------------------------


def chromium_driver(width=1280, height=900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromium-driver are needed (scripts/setup.sh installs them as root)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-proxy-server"]:
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def shot(driver, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def test_the_console_signs_in_shows_a_hook_failing_and_replays_a_dead_letter(server_factory):
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    server = server_factory(config=FAST_RETRIES.replace("[delivery]", '[delivery]\nretry_window = "1s"'))
    broken = {"value": False}
    receiver = Receiver(lambda r: Answer(500, body=b"receiver says no") if broken["value"] else Answer(200)).start()
    server.set_hooks([webhook_hook(receiver.url, id="orders"), webhook_hook(receiver.url, id="audit",
                                                                              event_types=["member.added"])])
    server.send_events([{"id": f"warm-{i}", "type": "message.new"} for i in range(5)])
    wait_until(lambda: hook_status(server, "orders")["delivered"] == 5, what="the first deliveries")

    driver = chromium_driver()
    # The console redraws its tables on every refresh, so an element found a moment ago may be
    # gone when it is read: the wait looks again instead of failing.
    wait = WebDriverWait(driver, 30, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
    try:
        driver.get(f"{server.url}/console")
        wait.until(lambda d: d.find_element(By.ID, "signin").is_displayed())
        shot(driver, "signin")
        driver.find_element(By.ID, "api-key").send_keys(server.key)
        driver.find_element(By.ID, "api-secret").send_keys(server.secret)
        driver.find_element(By.CSS_SELECTOR, "#signin-form button[type=submit]").click()
        row = '#hooks-table tr[data-hook-id="orders"] .state'
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).text == "healthy")

        # The secret became an HttpOnly, SameSite=Strict cookie; the browser keeps nothing else.
        [cookie] = [c for c in driver.get_cookies() if c["name"] == "hookrelay_console"]
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        assert server.secret not in cookie["value"]
        storage = driver.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
        assert storage == [0, 0, ""], storage
        assert server.secret not in driver.page_source
        # The cookie alone (as a forged cross-site request would carry it) is not enough.
        forged = requests.get(f"{server.url}/v1/hooks", cookies={"hookrelay_console": cookie["value"]}, timeout=10)
        assert forged.status_code == 401
        shot(driver, "hooks")

        # The receiver starts failing: the page shows it without a reload.
        broken["value"] = True
        server.send_events([{"id": f"fail-{i}", "type": "message.new"} for i in range(3)])
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, row).text in ("retrying", "backing off", "open"))
        wait.until(lambda d: "receiver says no" in d.find_element(
            By.CSS_SELECTOR, '#hooks-table tr[data-hook-id="orders"] td.response').text)
        shot(driver, "hooks-failing")

        # One hook: its attempts with the receiver's answers, then dead letters to replay.
        wait.until(lambda d: d.find_element(By.LINK_TEXT, "orders").click() or True)
        wait.until(lambda d: "receiver says no" in d.find_element(By.ID, "attempts").text)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#dead-letters button[data-replay="fail-1"]'))
        shot(driver, "hook")
        broken["value"] = False
        wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '#dead-letters button[data-replay="fail-1"]').click()
                   or True)
        wait.until(lambda d: not d.find_elements(By.CSS_SELECTOR, '#dead-letters button[data-replay="fail-1"]'))
        wait_until(lambda: trace(server, "fail-1")[0]["orders"]["state"] == "delivered",
                   what="the replayed dead letter delivered")
        # Keyboard: pause and resume with the keyboard alone.
        pause = driver.find_element(By.ID, "pause")
        pause.send_keys("\n")
        wait_until(lambda: hook_status(server, "orders")["paused"], what="paused from the console")
        driver.find_element(By.ID, "resume").send_keys("\n")
        wait_until(lambda: not hook_status(server, "orders")["paused"], what="resumed from the console")

        # Find an event by id and see where it went.
        search = driver.find_element(By.ID, "event-id")
        search.send_keys("fail-1\n")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, '#event-hooks tr[data-hook-id="orders"] .state'))
        states = wait.until(lambda d: {r.get_attribute("data-hook-id"): r.find_element(By.CSS_SELECTOR, ".state").text
                                       for r in d.find_elements(By.CSS_SELECTOR, "#event-hooks tbody tr")})
        assert states == {"orders": "delivered", "audit": "filtered out"}, states
        assert "message.new" in wait.until(lambda d: d.find_element(By.ID, "event-payload").text)
        shot(driver, "event")

        # Phone width: the page still fits.
        driver.set_window_size(390, 844)
        driver.get(f"{server.url}/console#/")
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 400, width
        shot(driver, "hooks-phone")

        # Sign out: the session ends, on the server too.
        driver.find_element(By.ID, "sign-out").click()
        wait.until(lambda d: d.find_element(By.ID, "signin").is_displayed())
        replayed = requests.get(f"{server.url}/v1/hooks", cookies={"hookrelay_console": cookie["value"]},
                                headers={"X-Hookrelay-Console": "1"}, timeout=10)
        assert replayed.status_code == 401
    finally:
        driver.quit()
        receiver.stop()
    for name in ["signin", "hooks", "hooks-failing", "hook", "event", "hooks-phone"]:
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 5000, name
