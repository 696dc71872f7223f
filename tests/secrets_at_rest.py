"""Reads hook secrets straight from a data directory, independently of hookrelay's code: the
SQLite file with the standard library, the ChaCha20-Poly1305 blob with `cryptography`."""

import sqlite3
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305


def stored_hook_secrets(data_dir):
    data_dir = Path(data_dir)
    key = bytes.fromhex((data_dir / "secret.key").read_text().strip())
    db = sqlite3.connect(data_dir / "hookrelay.db")
    try:
        rows = db.execute("SELECT app_id, id, secret FROM hooks WHERE secret IS NOT NULL").fetchall()
    finally:
        db.close()
    cipher = ChaCha20Poly1305(key)
    # Stored ids carry their app (`<app id>-<id>`); the result is keyed by the id the app sees.
    return {hook_id.removeprefix(f"{app}-"): cipher.decrypt(blob[:12], blob[12:], None).decode()
            for app, hook_id, blob in rows}


def database_bytes(data_dir):
    data_dir = Path(data_dir)
    return b"".join(p.read_bytes() for p in data_dir.glob("hookrelay.db*"))
