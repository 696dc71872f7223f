"""Runs moto's server (the AWS emulator the tests use) with one performance fix.

moto 5.2 reads `queue.attributes` on every SendMessage / SendMessageBatch only to learn whether
content-based deduplication is on, and `attributes` recounts every message in the queue, so each
send costs time in proportion to the queue's depth (measured in ../shared/reference/aws-testbed.md:
10,000 messages took 836 s instead of 2.5 s). The fix rewrites those lookups to read the queue's
own field. Behaviour is otherwise unchanged; the rewrite fails loudly if moto's code changes.

Usage: python moto_server.py -H 127.0.0.1 -p PORT
"""

import inspect
import sys
import textwrap

import moto.sqs.models as sqs_models


def content_based_dedup(queue):
    if not queue.fifo_queue:
        return None
    value = getattr(queue, "content_based_deduplication", None)
    return str(value).lower() if isinstance(value, bool) else value


def rewrite(owner, name, receiver):
    source = textwrap.dedent(inspect.getsource(getattr(owner, name)))
    slow = f'{receiver}.attributes.get("ContentBasedDeduplication")'
    if slow not in source:
        raise SystemExit(f"moto changed: {owner.__name__}.{name} no longer reads {slow}")
    fast = source.replace(slow, f"content_based_dedup({receiver})")
    namespace = {}
    exec(compile(fast, f"<moto_server.py: {name}>", "exec"), vars(sqs_models), namespace)
    setattr(owner, name, namespace[name])


sqs_models.content_based_dedup = content_based_dedup
rewrite(sqs_models.SQSBackend, "send_message", "queue")
rewrite(sqs_models.SQSBackend, "_validate_message", "queue")
rewrite(sqs_models.Queue, "add_message", "self")

from moto.server import main  # noqa: E402  (after the rewrite, on purpose)

sys.exit(main())
