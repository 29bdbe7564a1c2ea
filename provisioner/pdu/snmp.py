"""SNMP GET and SET through pysnmp's asyncio API, callable from synchronous code with a bounded wait.

pysnmp 7 only speaks asyncio. Workers and views are synchronous (and may already run inside an event
loop, as under daphne), so every request runs on one event loop of our own in a daemon thread, with one
SnmpEngine, and the caller waits on a future for at most the target's timeout plus a margin.

Numeric OIDs only, with MIB lookups off: nothing is compiled or fetched, and pysmi need not be installed.

Results come back as plain ints/strings or as :data:`MISSING` for noSuchObject / noSuchInstance /
endOfMibView; transport and security failures are raised as our own errors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading

from pysnmp.hlapi.v3arch import asyncio as hlapi
from pysnmp.proto import errind, rfc1905

from .errors import PduAuthError, PduError, PduTimeout, PduUnreachable, PduUnsupported
from .target import AuthProtocol, PduTarget, PrivProtocol, SnmpVersion

#: Tries per request: one retry within the target's timeout (UDP loses packets).
_RETRIES = 1
#: How long past its own timeout we wait for a request before giving up on the loop itself.
_MARGIN_S = 2.0

_AUTH = {
    AuthProtocol.SHA: hlapi.USM_AUTH_HMAC96_SHA,
    AuthProtocol.SHA256: hlapi.USM_AUTH_HMAC192_SHA256,
    AuthProtocol.SHA512: hlapi.USM_AUTH_HMAC384_SHA512,
    AuthProtocol.MD5: hlapi.USM_AUTH_HMAC96_MD5,
}
_PRIV = {
    PrivProtocol.AES: hlapi.USM_PRIV_CFB128_AES,
    PrivProtocol.AES256: hlapi.USM_PRIV_CFB256_AES,
    PrivProtocol.DES: hlapi.USM_PRIV_CBC56_DES,
    PrivProtocol.NONE: hlapi.USM_PRIV_NONE,
}
# USM report PDUs that mean "these credentials are wrong": fail now, never retry (accounts lock).
_AUTH_FAILURES = {
    errind.WrongDigest: "the PDU rejected the SNMPv3 authentication key (wrong digest)",
    errind.UnknownUserName: "the PDU does not know this SNMPv3 user",
    errind.DecryptionError: "the PDU could not decrypt the request: wrong SNMPv3 privacy key or protocol",
    errind.UnsupportedSecurityLevel: "the PDU does not accept this SNMPv3 security level for the user",
    errind.UnsupportedAuthProtocol: "the PDU does not support this SNMPv3 authentication protocol",
    errind.UnsupportedPrivProtocol: "the PDU does not support this SNMPv3 privacy protocol",
    errind.AuthenticationFailure: "the PDU rejected the SNMPv3 credentials",
    errind.UnknownCommunityName: "the PDU rejected the community",
}
# Error statuses of a response that mean "not allowed to write this".
_WRITE_REFUSED = {"noAccess", "authorizationError", "readOnly"}
# ...and those that mean "no such row" for a write.
_NO_ROW = {"noCreation", "notWritable", "noSuchName", "inconsistentName"}

MISSING = object()


class _Loop:
    """One event loop in a daemon thread, and the SnmpEngine that lives on it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._engine = None
        self._pid = 0

    def submit(self, coro_factory, timeout_s: float):
        with self._lock:
            # A forked child (an RQ work horse) inherits the loop object but not the thread that ran it.
            if self._loop is None or self._pid != os.getpid() or not self._loop.is_running():
                self._start()
        future = asyncio.run_coroutine_threadsafe(self._call(coro_factory), self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def _call(self, coro_factory):
        if self._engine is None:
            self._engine = hlapi.SnmpEngine()
        return await coro_factory(self._engine)

    def _start(self):
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run():
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        threading.Thread(target=run, name="pdu-snmp", daemon=True).start()
        started.wait(5)
        self._loop = loop
        self._engine = None
        self._pid = os.getpid()


_LOOP = _Loop()


def _auth_data(target: PduTarget):
    if target.version is SnmpVersion.V2C:
        return hlapi.CommunityData(target.community, mpModel=1)
    priv = target.priv_protocol
    return hlapi.UsmUserData(
        target.user,
        authKey=target.auth_key,
        privKey=target.priv_key if priv is not PrivProtocol.NONE else None,
        authProtocol=_AUTH[target.auth_protocol],
        privProtocol=_PRIV[priv],
    )


def _plain(value):
    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView):
        return MISSING
    try:
        return int(value)
    except (TypeError, ValueError):
        return value.prettyPrint()


def _request(target: PduTarget, oids: list[str], values: list[int] | None) -> list:
    per_try_s = target.timeout_s / (_RETRIES + 1)

    async def run(engine):
        transport = await hlapi.UdpTransportTarget.create(
            (target.address, target.port), timeout=per_try_s, retries=_RETRIES
        )
        context = hlapi.ContextData(contextName=target.context)
        if values is None:
            binds = [hlapi.ObjectType(hlapi.ObjectIdentity(oid)) for oid in oids]
            return await hlapi.get_cmd(engine, _auth_data(target), transport, context, *binds, lookupMib=False)
        binds = [
            hlapi.ObjectType(hlapi.ObjectIdentity(oid), hlapi.Integer32(value))
            for oid, value in zip(oids, values, strict=True)
        ]
        return await hlapi.set_cmd(engine, _auth_data(target), transport, context, *binds, lookupMib=False)

    try:
        error_indication, error_status, error_index, var_binds = _LOOP.submit(run, target.timeout_s + _MARGIN_S)
    except concurrent.futures.TimeoutError:
        raise PduTimeout(target.endpoint, f"no answer within {target.timeout_s:g} s") from None
    except PduError:
        raise
    except OSError as exc:  # name resolution, no route
        raise PduUnreachable(target.endpoint, f"cannot reach it: {exc.strerror or exc}") from None
    except Exception as exc:  # pysnmp raises its own errors for bad addresses; keep only the class and text
        raise PduUnreachable(target.endpoint, f"SNMP request failed: {type(exc).__name__}: {exc}") from None
    if error_indication:
        _raise_indication(target, error_indication)
    if error_status:
        status = error_status.prettyPrint()
        index = int(error_index) - 1 if error_index else 0
        oid = oids[index] if 0 <= index < len(oids) else oids[0]
        if status in _WRITE_REFUSED:
            who = "community" if target.version is SnmpVersion.V2C else "SNMPv3 user"
            raise PduAuthError(target.endpoint, f"the PDU refused the write ({status}): the {who} may be read-only")
        if status in _NO_ROW:
            return [MISSING if o == oid else None for o in oids]
        raise PduUnsupported(target.endpoint, f"the PDU answered {status} for {oid}")
    return [_plain(value) for _, value in var_binds]


def _raise_indication(target: PduTarget, indication) -> None:
    for kind, text in _AUTH_FAILURES.items():
        if isinstance(indication, kind):
            raise PduAuthError(target.endpoint, text)
    if isinstance(indication, errind.RequestTimedOut):
        detail = f"no answer within {target.timeout_s:g} s"
        if target.version is SnmpVersion.V2C:
            detail += " (an SNMP v2c agent also stays silent when the community is wrong)"
        raise PduTimeout(target.endpoint, detail)
    raise PduUnreachable(target.endpoint, f"SNMP error: {indication}")


def get(target: PduTarget, oids: list[str]) -> list:
    """The values of ``oids`` (ints where numeric, :data:`MISSING` where the agent has no such object)."""
    return _request(target, oids, None)


def set_integers(target: PduTarget, oids: list[str], values: list[int]) -> list:
    """SET each OID to its integer value; returns what the agent answered (MISSING for a row it has not)."""
    return _request(target, oids, values)
