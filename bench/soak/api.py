"""The REST API as a technician's script uses it, and /healthz."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

HTTP_TIMEOUT_S = 10.0


class ApiError(Exception):
    pass


class Api:
    """``Authorization: Token <key>`` over plain HTTP to daphne, saying X-Forwarded-Proto: https as nginx
    in front of it would (production settings redirect plain HTTP)."""

    def __init__(self, port: int, key: str):
        self.base = f"http://127.0.0.1:{port}"
        self.key = key
        self.errors = 0

    def call(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Token {self.key}")
        request.add_header("X-Forwarded-Proto", "https")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            self.errors += 1
            raise ApiError(f"{method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from None
        except (OSError, ValueError) as exc:
            self.errors += 1
            raise ApiError(f"{method} {path}: {exc}") from None

    async def acall(self, method: str, path: str, body: dict | None = None):
        return await asyncio.to_thread(self.call, method, path, body)


def healthz(port: int) -> tuple[int, dict]:
    """(status, body) of /healthz; (0, {}) when nothing answers."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/healthz")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {}
    except (OSError, ValueError):
        return 0, {}
