"""The operator CLI against a live server (issue 5); `--json` output is asserted."""

import json
import os
import subprocess

from conftest import BIN, wait_until
from receiver import Answer, Receiver


def cli(server, *args, stdin=None, check=True):
    env = {**os.environ, "HOOKRELAY_URL": server.url, "HOOKRELAY_API_KEY": server.key,
           "HOOKRELAY_API_SECRET": server.secret}
    out = subprocess.run([str(BIN), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60)
    if check:
        assert out.returncode == 0, out.stderr + out.stdout
    return out


def test_cli_sends_lists_and_replays(server_factory, tmp_path):
    server = server_factory(config='[delivery]\nretry_window = "1s"\nretry_base = "50ms"\n')
    broken = {"value": True}
    receiver = Receiver(lambda r: Answer(500) if broken["value"] and json.loads(r.body)["id"] == "e-3" else Answer(200)).start()
    [hook] = server.set_hooks([{"enabled": True, "hook_type": "webhook", "webhook_url": receiver.url}])

    lines = [json.dumps({"id": f"e-{i}", "type": "message.new"}) for i in range(1200)]
    lines.insert(5, "not json")
    events_file = tmp_path / "events.jsonl"
    events_file.write_text("\n".join(lines) + "\n")
    sent = cli(server, "events", "send", str(events_file), "--batch", "500", "--json", check=False)
    assert sent.returncode == 1, "a refused line makes the command fail"
    summary = json.loads(sent.stdout)
    assert summary["sent"] == 1200 and summary["duplicates"] == 0
    assert summary["refused"] == ["line 6: not JSON: expected ident at line 1 column 2"]
    again = json.loads(cli(server, "events", "send", "-", "--json", stdin="\n".join(lines[:3])).stdout)
    assert (again["sent"], again["duplicates"]) == (3, 3)

    hooks = json.loads(cli(server, "hooks", "list", "--json").stdout)["hooks"]
    assert [h["id"] for h in hooks] == [hook["id"]]
    wait_until(lambda: json.loads(cli(server, "dead-letters", "list", hook["id"], "--json").stdout)["dead_letters"],
               timeout=30, what="the dead letter")
    letters = json.loads(cli(server, "dead-letters", "list", hook["id"], "--json").stdout)["dead_letters"]
    assert [(d["event_id"], d["reason"]) for d in letters] == [("e-3", "retries_exhausted")]
    status = json.loads(cli(server, "hooks", "status", hook["id"], "--json").stdout)["hook"]
    assert status["dead_letters"] == 1 and status["delivered"] >= 1199

    broken["value"] = False
    replay = json.loads(cli(server, "dead-letters", "replay", hook["id"], "e-3", "--json").stdout)
    assert replay == {"replayed": 1, "not_found": []}
    wait_until(lambda: any(r.headers.get("x-webhook-id") == "e-3" and not broken["value"] for r in receiver.requests[-5:]),
               what="the replayed delivery")
    # The human forms print tables.
    table = cli(server, "hooks", "list").stdout
    assert table.splitlines()[0].split()[:3] == ["ID", "TYPE", "STATE"] and hook["id"] in table
    assert "retry backlog" in cli(server, "hooks", "status", hook["id"]).stdout
    wrong = subprocess.run([str(BIN), "hooks", "list", "--url", server.url, "--api-key", server.key,
                            "--api-secret", "wrong"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 1 and "401" in wrong.stderr
    receiver.stop()
