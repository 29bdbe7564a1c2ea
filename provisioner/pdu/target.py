"""Where a PDU is and how to talk SNMP to it; secrets never show in repr, logs or errors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

#: Seconds one SNMP request may take, retries included, before it fails as a timeout.
DEFAULT_TIMEOUT_S = 3.0


class SnmpVersion(enum.StrEnum):
    V2C = "v2c"  # community string, sent in clear
    V3 = "v3"  # USM user with authentication and privacy keys


class AuthProtocol(enum.StrEnum):
    """SNMPv3 authentication (USM); the values are what the inventory stores."""

    SHA = "sha"  # HMAC-SHA-96, what most PDUs offer
    SHA256 = "sha256"  # HMAC-SHA-192 over SHA-256
    SHA512 = "sha512"
    MD5 = "md5"  # old firmware only


class PrivProtocol(enum.StrEnum):
    """SNMPv3 privacy (encryption)."""

    AES = "aes"  # AES-128-CFB, what most PDUs offer
    AES256 = "aes256"
    DES = "des"  # old firmware only
    NONE = "none"  # authentication without encryption (authNoPriv)


@dataclass(frozen=True)
class PduTarget:
    """One PDU: address, port, and the SNMP credentials. Either ``community`` (v2c) or a v3 user."""

    address: str
    port: int = 161
    version: SnmpVersion = SnmpVersion.V2C
    community: str = field(default="", repr=False)
    user: str = ""
    auth_protocol: AuthProtocol = AuthProtocol.SHA
    auth_key: str = field(default="", repr=False)
    priv_protocol: PrivProtocol = PrivProtocol.AES
    priv_key: str = field(default="", repr=False)
    #: SNMPv3 context name; most PDUs use the empty one.
    context: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self):
        object.__setattr__(self, "version", SnmpVersion(self.version))
        object.__setattr__(self, "auth_protocol", AuthProtocol(self.auth_protocol))
        object.__setattr__(self, "priv_protocol", PrivProtocol(self.priv_protocol))
        if not self.address:
            raise ValueError("PDU address is empty")
        if not 0 < self.port < 65536:
            raise ValueError(f"PDU port {self.port!r} is not a port number")
        if not self.timeout_s > 0:
            raise ValueError(f"PDU timeout {self.timeout_s!r} must be positive")
        if self.version is SnmpVersion.V2C and not self.community:
            raise ValueError(f"PDU {self.endpoint}: SNMP v2c needs a community")
        if self.version is SnmpVersion.V3:
            if not self.user:
                raise ValueError(f"PDU {self.endpoint}: SNMPv3 needs a user name")
            if len(self.auth_key) < 8:
                raise ValueError(f"PDU {self.endpoint}: the SNMPv3 authentication key needs at least 8 characters")
            if self.priv_protocol is not PrivProtocol.NONE and len(self.priv_key) < 8:
                raise ValueError(f"PDU {self.endpoint}: the SNMPv3 privacy key needs at least 8 characters")

    @property
    def endpoint(self) -> str:
        """``address:port``, the way technicians name a PDU in messages."""
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"
