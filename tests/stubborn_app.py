"""An ASGI application that will not end when cancelled: what a stop of config.serve must outlast."""

import asyncio


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"started\n", "more_body": True})
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue  # swallowed: daphne's stop would wait for this forever
