"""Runs moto's server (the AWS emulator the tests use) with one performance fix.

moto 5.2 reads `queue.attributes` on every SendMessage / SendMessageBatch only to learn whether
content-based deduplication is on, and `attributes` recounts every message in the queue, so each
send costs time in proportion to the queue's depth (measured on this machine: 10,000 messages
took 836 s instead of 2.5 s). The fix rewrites those lookups to read the queue's
own field. ReceiveMessage has the same flaw once per received message (it reads the retention
period through the queue's attributes), so draining a deep queue crawled too: measured here, 1,400
messages drained at ~7/s; the same fix applies. Behaviour is otherwise unchanged; each rewrite
fails loudly if moto's code changes.

Usage: python moto_server.py -H 127.0.0.1 -p PORT
"""

import inspect
import re
import sys
import textwrap

import moto.sqs.models as sqs_models


def content_based_dedup(queue):
    if not queue.fifo_queue:
        return None
    value = getattr(queue, "content_based_deduplication", None)
    return str(value).lower() if isinstance(value, bool) else value


def rewrite(owner, name, slow, fast):
    """Replaces the `slow` pattern (a regular expression) in a moto method's source by `fast`."""
    source = textwrap.dedent(inspect.getsource(getattr(owner, name)))
    fixed, count = re.subn(slow, fast, source)
    if count == 0:
        raise SystemExit(f"moto changed: {owner.__name__}.{name} no longer matches {slow}")
    namespace = {}
    exec(compile(fixed, f"<moto_server.py: {name}>", "exec"), vars(sqs_models), namespace)
    setattr(owner, name, namespace[name])


def dedup_lookup(receiver):
    return (re.escape(f'{receiver}.attributes.get("ContentBasedDeduplication")'), f"content_based_dedup({receiver})")


sqs_models.content_based_dedup = content_based_dedup
rewrite(sqs_models.SQSBackend, "send_message", *dedup_lookup("queue"))
rewrite(sqs_models.SQSBackend, "_validate_message", *dedup_lookup("queue"))
rewrite(sqs_models.Queue, "add_message", *dedup_lookup("self"))
rewrite(
    sqs_models.SQSBackend,
    "is_message_valid_based_on_retention_period",
    r'self\.get_queue_attributes\(\s*queue_name,\s*\["MessageRetentionPeriod"\]\s*\)\["MessageRetentionPeriod"\]',
    "int(self.get_queue(queue_name).message_retention_period)",
)

from moto.server import main  # noqa: E402  (after the rewrite, on purpose)

sys.exit(main())
