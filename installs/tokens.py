"""An install's three credentials, as Ironic's agent token is (docs/design.md, Threat model).

- The boot credential goes into the boot files: the kernel command line (the agent's
  ``provisioner.token=``) and the answer-file URL (``/i/<boot credential>/preseed.cfg``). Anyone who
  can read the TFTP root or ``/boot/ipxe`` can read it, so it is good for one use only: the agent's
  registration, or the installer's fetch of the answer file that carries the callback token.
- The agent token is handed to the agent in its registration answer and opens the agent API.
- The callback token is written into the answer file (or handed to the agent at registration for
  the installed OS's first-boot call) and opens only ``/i/<callback token>/events/<kind>``.

None is stored. Each is an HMAC, under SECRET_KEY and a salt of its own, of the install's random
nonce, so the worker writing a boot config and the view rendering an answer file can derive them
from the row, while the database holds only the nonce and each token's SHA-256 (for lookup). A
stolen database dump therefore yields no usable token, and one token never reveals another.
"""

import hashlib
import hmac
import secrets

from django.utils.crypto import salted_hmac

_BOOT_SALT = "provisioner.installs.token"
_AGENT_SALT = "provisioner.installs.agent-token"
_CALLBACK_SALT = "provisioner.installs.callback-token"
# A longer string is no token of ours: it is not hashed or looked up.
MAX_TOKEN_LEN = 200


def new_nonce() -> str:
    return secrets.token_hex(16)


def boot_token(nonce: str) -> str:
    return salted_hmac(_BOOT_SALT, nonce, algorithm="sha256").hexdigest()


def agent_token(nonce: str) -> str:
    return salted_hmac(_AGENT_SALT, nonce, algorithm="sha256").hexdigest()


def callback_token(nonce: str) -> str:
    return salted_hmac(_CALLBACK_SALT, nonce, algorithm="sha256").hexdigest()


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def matches(token: str, expected_hash: str | None) -> bool:
    return bool(expected_hash) and hmac.compare_digest(token_hash(token), expected_hash)


def usable(token: str) -> bool:
    """Worth a lookup: present and of a size a token of ours has."""
    return bool(token) and len(token) <= MAX_TOKEN_LEN


def for_new_install() -> dict[str, str]:
    """The credential columns of a new Install row. The agent token's hash is written only when the
    boot credential is exchanged for it, so it opens nothing before that."""
    nonce = new_nonce()
    return {
        "token_nonce": nonce,
        "boot_token_hash": token_hash(boot_token(nonce)),
        "callback_token_hash": token_hash(callback_token(nonce)),
    }
