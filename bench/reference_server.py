"""A do-nothing aiohttp webhook endpoint: the ceiling of the HTTP stack alone on this machine.

`python -m bench.reference_server PORT` answers every `POST /webhooks/{format}` with the same
small JSON a trigger sends, after reading the body, and nothing else (no auth, parsing, bus).
The ingest scenario loads it with the same clients to show how much of the trigger's rate the
HTTP stack itself takes.
"""

from __future__ import annotations

import sys

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"stored": ["reference"], "duplicates": [], "ignored": []})


def main() -> None:
    app = web.Application()
    app.router.add_post("/webhooks/{format}", accept)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
