"""Install tokens: what a machine presents to fetch its answer file and talk to the agent API.

The token is never stored. It is an HMAC of a random per-install nonce under SECRET_KEY, so
the worker writing a boot config and the view rendering an answer file can both derive it
from the row, while the database holds only the nonce and the token's SHA-256 (for lookup).
A stolen database dump therefore yields no usable token.
"""

import hashlib
import hmac
import secrets

from django.utils.crypto import salted_hmac

_SALT = "provisioner.installs.token"


def new_nonce() -> str:
    return secrets.token_hex(16)


def token_for(nonce: str) -> str:
    return salted_hmac(_SALT, nonce, algorithm="sha256").hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, expected_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), expected_hash)
