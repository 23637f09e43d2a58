"""Secrets at rest: how a secret the manifests hold is recorded on the host, and hidden.

Pure. A record (`reconciler.diff.applied`) never holds a secret in clear text nor a
bare hash of it (a weak VNC password's sha256 is looked up in seconds): it holds
`pbkdf2-sha256:<iterations>:<salt hex>:<key hex>` of the secret's sha256 with a random
salt. `salted_matches` checks a desired secret against it; `redact_record` is what
`observe` prints instead of a record that holds secrets. Used by the diff and observe.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json

from reconciler.model.common import SECRET_FIELDS

SALTED = "pbkdf2-sha256"
# Stretching makes each guess at a weak password cost this many sha256 rounds per VM;
# the diff pays it once per recorded secret per plan (a few ms).
SALT_ITERATIONS = 20_000
REDACTED = "(sensitive)"


def salt_secret(hashed: str, salt: bytes) -> str:
    """The recorded form of a secret whose sha256 form (`fields.secret_hash`) is `hashed`."""
    key = hashlib.pbkdf2_hmac("sha256", hashed.encode(), salt, SALT_ITERATIONS)
    return f"{SALTED}:{SALT_ITERATIONS}:{salt.hex()}:{key.hex()}"


@functools.lru_cache(maxsize=4096)
def salted_matches(recorded: str, hashed: str) -> bool:
    """Is `recorded` (a `salt_secret` value) the secret whose sha256 form is `hashed`?
    ~5 ms each; cached, so an agent that plans again and again pays it once per value."""
    parts = recorded.split(":")
    if len(parts) != 4 or parts[0] != SALTED or not parts[1].isdigit():
        return False
    try:
        salt, key = bytes.fromhex(parts[2]), bytes.fromhex(parts[3])
    except ValueError:
        return False
    rounds = int(parts[1])
    if not 1 <= rounds <= 10 * SALT_ITERATIONS:  # a tampered count must not stall the plan
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", hashed.encode(), salt, rounds), key)


def holds_secret(text: str) -> bool:
    return any(f'"{key}"' in text for key in SECRET_FIELDS)


def _redact(data: object) -> object:
    if isinstance(data, dict):
        return {k: REDACTED if k in SECRET_FIELDS and v is not None else _redact(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_redact(v) for v in data]
    return data


def redact_record(text: str) -> str:
    """A JSON record with every secret (salted, hashed or clear) shown as `(sensitive)`,
    in the record's canonical form; a record that is not JSON is withheld whole."""
    try:
        data = json.loads(text)
    except ValueError:
        return f"{REDACTED} (unreadable record)"
    return json.dumps(_redact(data), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
