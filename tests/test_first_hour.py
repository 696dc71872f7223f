"""A new user's first hour (issue 13): the README's commands, the CLI as a Unix tool (run as the
real binary), testing a hook, and the queue URLs a local setup uses."""

import hashlib
import hmac
import json
import os
import pty
import re
import select
import socket
import subprocess
import time

import requests

from conftest import BIN, ROOT, Moto, free_port, server_token, sqs_hook, wait_until, webhook_hook
from receiver import Answer, Receiver


def cli(server, *args, stdin=None, check=True, env=None, stdout=subprocess.PIPE):
    full_env = {**os.environ, "HOOKRELAY_URL": server.url, "HOOKRELAY_API_KEY": server.key,
                "HOOKRELAY_API_SECRET": server.secret, **(env or {})}
    out = subprocess.run([str(BIN), *args], env=full_env, input=stdin, stdout=stdout,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr + (out.stdout or "")
    return out


def test_cargo_run_starts_the_server_binary():
    # The README's first command is `cargo run --release -- serve`; the workspace must pick the
    # server among its binaries (checked on the debug build, which the test run has already).
    out = subprocess.run(["cargo", "run", "-q", "--", "--version"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("hookrelay ")


def test_cli_is_quiet_when_its_reader_goes_away(server):
    server.set_hooks([webhook_hook(f"http://127.0.0.1:9/{i}", enabled=False) for i in range(40)])
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte is written
    try:
        for args in (["hooks", "list"], ["hooks", "list", "--json"], ["completions", "bash"], ["token"]):
            out = cli(server, *args, stdout=write_end, check=False)
            assert (out.returncode, out.stderr) == (0, ""), (args, out.stderr)
    finally:
        os.close(write_end)
    # As typed in a shell.
    env = {**os.environ, "HOOKRELAY_URL": server.url, "HOOKRELAY_API_KEY": server.key,
           "HOOKRELAY_API_SECRET": server.secret}
    for reader in ("head -1", "grep -q ID", "true"):
        shell = subprocess.run(["bash", "-o", "pipefail", "-c", f"'{BIN}' hooks list | {reader}"],
                               env=env, capture_output=True, text=True, timeout=60)
        assert shell.returncode == 0 and "panicked" not in shell.stderr, (reader, shell.stderr)


def read_until(fd, text, timeout=20.0):
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:
                break
    return seen


def test_logs_are_coloured_only_on_a_terminal_and_never_with_no_color(server, tmp_path):
    assert "\x1b[" not in server.log(), "a log file carries no colour codes"
    for no_color, coloured in ((None, True), ("1", False)):
        master, slave = pty.openpty()
        env = {**os.environ, "HOOKRELAY_LOG": "info"}
        env.pop("NO_COLOR", None)
        if no_color:
            env["NO_COLOR"] = no_color
        port = free_port()
        proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(tmp_path / f"tty-{port}"),
                                 "--listen", f"127.0.0.1:{port}"], stdout=slave, stderr=slave, env=env)
        os.close(slave)
        try:
            seen = read_until(master, b"hookrelay is serving")
            assert b"hookrelay is serving" in seen, seen
            assert (b"\x1b[" in seen) == coloured, seen
        finally:
            proc.terminate()
            proc.wait(30)
            os.close(master)


def test_events_send_reports_bad_lines_sends_the_rest_and_is_safe_to_rerun(server, tmp_path):
    receiver = Receiver().start()
    server.set_hooks([webhook_hook(receiver.url)])
    written = '{"type":"message.new",  "z":1, "a":{"b":2.50}}'
    lines = [
        '{"id":"keep-1","type":"message.new","z":1,"a":[1,2]}',
        "not json",
        "",
        written,
        '{"type":"Not A Type"}',
        '{"id":"keep-2","type":"reaction.new"}\r',
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    first = cli(server, "events", "send", str(path), "--json", check=False)
    assert first.returncode == 1, "refused lines make the command fail"
    summary = json.loads(first.stdout)
    assert (summary["sent"], summary["duplicates"]) == (3, 0)
    assert [r.split(":")[0] for r in summary["refused"]] == ["line 2", "line 5"], summary["refused"]
    assert "not JSON" in summary["refused"][0] and "Not A Type" in summary["refused"][1]

    wait_until(lambda: len(receiver.requests) >= 3, what="the three good events")
    # The server adds only `created_at` at the front (the lines have none); the rest is as written.
    bodies = {r.headers["x-webhook-id"]: re.sub(r'^\{"created_at":"[^"]+",', "{", r.body.decode())
              for r in receiver.requests}
    assert bodies["keep-1"] == lines[0], "sent byte for byte as written"
    assert bodies["keep-2"] == lines[5].strip()
    [derived] = [i for i in bodies if i.startswith("cli-")]
    assert bodies[derived] == '{"id":"%s",' % derived + written[1:], "only the id is added"

    again = json.loads(cli(server, "events", "send", str(path), "--json", check=False).stdout)
    assert (again["sent"], again["duplicates"]) == (3, 3), "a second run stores nothing twice"
    strict = cli(server, "events", "send", str(path), "--strict", check=False)
    assert strict.returncode == 1 and "nothing was sent" in strict.stderr
    assert "line 2" in strict.stdout and "line 5" in strict.stdout
    # Once the hook's cursor has passed everything in the log, nothing more was delivered.
    hooks = lambda: server.request("GET", "/v1/hooks").json()["hooks"]  # noqa: E731
    wait_until(lambda: all(h["lag"]["events"] == 0 and h["in_flight"] == 0 for h in hooks()),
               what="the hook caught up")
    assert len(receiver.requests) == 3
    receiver.stop()


def test_hooks_can_be_paused_resumed_replayed_and_tested_from_the_cli(server):
    receiver = Receiver().start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    hook_id = hook["id"]

    tested = json.loads(cli(server, "hooks", "test", hook_id, "--json").stdout)
    assert tested["status"] == "ok" and tested["latency_ms"] >= 0
    [probe] = receiver.requests
    body = json.loads(probe.body)
    assert body["type"] == "health.check" and body["id"] == tested["event_id"]
    expected = hmac.new(server.secret.encode(), probe.body, hashlib.sha256).hexdigest()
    assert probe.headers["x-signature"] == expected, "signed like every delivery"
    status = json.loads(cli(server, "hooks", "status", hook_id, "--json").stdout)["hook"]
    assert status["delivered"] == 0, "a test is not counted as a delivery"

    assert cli(server, "hooks", "pause", hook_id).stdout.strip().endswith("paused")
    server.send_events([{"id": "while-paused", "type": "message.new"}])
    status = lambda: json.loads(cli(server, "hooks", "status", hook_id, "--json").stdout)["hook"]  # noqa: E731
    paused = status()
    assert paused["state"] == "paused" and paused["lag"]["events"] == 1, "it waits in the log"
    assert "while-paused" not in receiver.by_id()
    assert cli(server, "hooks", "resume", hook_id).stdout.strip().endswith("healthy")
    wait_until(lambda: "while-paused" in receiver.by_id(), what="delivery after resume")

    replay = json.loads(cli(server, "hooks", "replay", hook_id, "--since", "1h", "--json").stdout)
    assert replay["events_after_cursor"] == 1
    wait_until(lambda: len(receiver.by_id()["while-paused"]) == 2, what="the replayed event")

    # A receiver that refuses: the test says what it answered, and the command fails.
    receiver.behaviour = lambda r: Answer(500, body=b"receiver is broken")
    failed = cli(server, "hooks", "test", hook_id, check=False)
    assert failed.returncode == 1
    assert "HTTP 500" in failed.stdout and "receiver is broken" in failed.stdout
    missing = cli(server, "hooks", "test", "no-such-hook", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr
    receiver.stop()


def test_hook_test_reaches_an_sqs_queue(server, moto):
    queue = moto.create_queue()
    [hook] = server.set_hooks([sqs_hook(queue)])
    r = server.request("POST", f"/v1/hooks/{hook['id']}/test", {})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    [message] = moto.drain(queue, 1)
    assert json.loads(message["Body"])["type"] == "health.check"
    assert message["MessageAttributes"]["X-Signature"]["StringValue"]

    [broken] = server.set_hooks([sqs_hook("no-such-queue")])
    answer = server.request("POST", f"/v1/hooks/{broken['id']}/test", {}).json()
    assert answer["status"] == "error" and "NonExistentQueue" in answer["error"]["code"], answer


def test_dead_letter_replay_names_ids_that_match_nothing(server_factory):
    server = server_factory(config='[delivery]\nretry_window = "300ms"\nretry_base = "50ms"\n')
    receiver = Receiver(lambda r: Answer(503)).start()
    [hook] = server.set_hooks([webhook_hook(receiver.url)])
    server.send_events([{"id": "dead-1", "type": "message.new"}])
    wait_until(lambda: server.request("GET", f"/v1/hooks/{hook['id']}/dead_letters").json()["dead_letters"],
               what="the dead letter")
    receiver.behaviour = lambda r: Answer(200)
    out = cli(server, "dead-letters", "replay", hook["id"], "dead-1", "typo-id", check=False)
    assert out.returncode == 1
    assert "replayed 1" in out.stdout and "typo-id" in out.stderr and "dead-1" not in out.stderr
    wait_until(lambda: any(r.headers["x-webhook-id"] == "dead-1" and r.index > 0 for r in receiver.requests),
               what="the replayed delivery")
    receiver.stop()


def test_token_works_for_curl_and_can_expire(server):
    token = cli(server, "token").stdout.strip()
    ok = requests.get(f"{server.url}/app", params={"api_key": server.key},
                      headers={"Authorization": token, "stream-auth-type": "jwt"}, timeout=10)
    assert ok.status_code == 200, ok.text
    short = cli(server, "token", "--expires-in", "1s").stdout.strip()
    ask = lambda: requests.get(f"{server.url}/app", params={"api_key": server.key},  # noqa: E731
                               headers={"Authorization": short, "stream-auth-type": "jwt"}, timeout=10)
    [expired] = wait_until(lambda: (r := ask()).status_code == 401 and [r], timeout=5, what="the token to expire")
    assert expired.json()["code"] == 40


def test_completions_for_each_shell():
    for shell in ("bash", "zsh", "fish"):
        out = subprocess.run([str(BIN), "completions", shell], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and "dead-letters" in out.stdout, shell


def test_secret_rotation_and_app_deletion(server):
    out = cli(server, "apps", "rotate-secret")
    new_secret = out.stdout.split("new api secret of app")[1].split(":", 1)[1].split()[0]
    assert len(new_secret) == 64
    old = server.request("GET", "/app")
    assert old.status_code == 401 and old.json()["code"] == 43
    assert server.request("GET", "/app", token=server_token(new_secret)).status_code == 200
    server.secret = new_secret

    refused = cli(server, "apps", "delete", check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert server.request("GET", "/app").status_code == 200, "nothing deleted without --yes"
    cli(server, "apps", "delete", "--yes")
    gone = server.request("GET", "/app")
    assert gone.status_code == 401 and gone.json()["code"] == 2


def test_wrong_credentials_say_which_one_is_wrong(server):
    wrong_secret = cli(server, "hooks", "list", env={"HOOKRELAY_API_SECRET": "not-the-secret"}, check=False)
    assert wrong_secret.returncode == 1 and "API secret is wrong" in wrong_secret.stderr
    wrong_key = cli(server, "hooks", "list", env={"HOOKRELAY_API_KEY": "nokey"}, check=False)
    assert wrong_key.returncode == 1 and "no app with this API key" in wrong_key.stderr
    nobody = cli(server, "hooks", "list", env={"HOOKRELAY_URL": f"http://127.0.0.1:{free_port()}"}, check=False)
    assert nobody.returncode == 1 and "is `hookrelay serve` running?" in nobody.stderr


def test_listen_takes_a_host_name_and_a_busy_port_creates_no_app(tmp_path):
    port = free_port()
    env = {**os.environ}
    for name in ("HOOKRELAY_API_KEY", "HOOKRELAY_API_SECRET"):
        env.pop(name, None)
    proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(tmp_path / "named"), "--listen", f"localhost:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def answers():
        assert proc.poll() is None, proc.stderr.read()
        try:
            return requests.get(f"http://localhost:{port}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    try:
        wait_until(answers, what="the server on localhost")
    finally:
        proc.terminate()
        proc.wait(30)

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        out = subprocess.run([str(BIN), "serve", "--data-dir", str(tmp_path / "fresh"), "--listen", f"127.0.0.1:{taken}"],
                             capture_output=True, text=True, timeout=30, env=env)
    assert out.returncode == 1 and "Address already in use" in out.stderr
    assert "api secret" not in out.stdout, "no app was created, no secret printed"
    assert not (tmp_path / "fresh" / "hookrelay.db").exists()
    bad = subprocess.run([str(BIN), "serve", "--listen", "localhost"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "127.0.0.1:3030" in bad.stderr


def test_ignored_first_app_variables_are_named_at_start(server_factory):
    server = server_factory()
    server.stop()
    server.env["HOOKRELAY_API_KEY"] = "some-other-key"
    server.start()
    wait_until(lambda: "HOOKRELAY_API_KEY is set" in server.log(), what="the warning")
    server.stop()
    server.env["HOOKRELAY_API_KEY"] = server.key
    server.env["HOOKRELAY_API_SECRET"] = "a-different-secret-value"
    server.start()
    wait_until(lambda: "HOOKRELAY_API_SECRET is not the API secret" in server.log(), what="the warning")
    assert "a-different-secret-value" not in server.log() and server.secret not in server.log()


def test_queue_urls_aws_forms_and_emulators(server, moto):
    aws_forms = [
        "https://queue.amazonaws.com/123456789012/legacy",
        "https://us-east-1.queue.amazonaws.com/123456789012/legacy-regional",
        "https://vpce-0a1b2c3d4e5f67890-abcdefgh.sqs.us-east-1.vpce.amazonaws.com/123456789012/private",
    ]
    hooks = server.set_hooks([sqs_hook("x", enabled=False, sqs_queue_url=u) for u in aws_forms])
    assert [h["sqs_queue_url"] for h in hooks] == aws_forms

    # An emulator's URL is refused unless the server's AWS endpoint points at it.
    r = server.request("PATCH", "/app", {"event_hooks": [sqs_hook("x", sqs_queue_url="http://localhost:4566/000000000000/q")]})
    assert r.status_code == 400
    reason = r.json()["exception_fields"]["event_hooks[0].sqs_queue_url"]
    assert "AWS_ENDPOINT_URL" in reason and "keep the AWS-form URL" in reason
    # moto's own URL is fine here: the test server's AWS_ENDPOINT_URL is moto.
    queue = moto.create_queue()
    [hook] = server.set_hooks([sqs_hook(queue, sqs_queue_url=moto.local_queue_url(queue))])
    assert hook["sqs_queue_url"].startswith(moto.endpoint)
    server.send_events([{"id": "via-emulator-url", "type": "message.new"}])
    [message] = moto.drain(queue, 1)
    assert json.loads(message["Body"])["id"] == "via-emulator-url"


def test_settings_out_of_bounds_stop_the_start_with_their_names(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[delivery]\nbatches_in_flight = 0\nread_batch = 1000\n[webhook]\nin_flight = 5000\n')
    out = subprocess.run([str(BIN), "serve", "--config", str(config), "--data-dir", str(tmp_path / "d"),
                          "--listen", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "delivery.batches_in_flight must be 1 to 256, not 0" in out.stderr, out.stderr
    assert "webhook.in_flight must be 1 to 1024, not 5000" in out.stderr
    assert not (tmp_path / "d").exists(), "nothing is created before the settings are checked"
