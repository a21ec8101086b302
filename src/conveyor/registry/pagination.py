"""Tag-list paging: opaque page tokens over either the registry's `Link` pages or client-side pages.

Registries that implement `n`/`last` answer with a `Link: <...>; rel="next"` header; the token then
carries that link. Registries that ignore `n` (Distribution 2.8 among them) return every tag at once;
the client then sorts them and pages itself, the token carrying the last tag returned.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class PageCursor:
    repository: str
    next_path: str = ""  # path + query of the registry's `rel="next"` link
    after: str = ""  # client-side paging: tags sorting after this one


def encode_page_token(cursor: PageCursor) -> str:
    payload = {"r": cursor.repository}
    if cursor.next_path:
        payload["n"] = cursor.next_path
    if cursor.after:
        payload["a"] = cursor.after
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str, repository: str) -> PageCursor:
    """The cursor in `token` ("" = first page). Raises ValueError for a token not made for `repository`."""
    if not token:
        return PageCursor(repository)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError):
        raise ValueError("the page token is not one this service returned") from None
    if not isinstance(payload, dict) or not all(isinstance(v, str) for v in payload.values()):
        raise ValueError("the page token is not one this service returned")
    if payload.get("r") != repository:
        raise ValueError(f"the page token belongs to another repository than {repository!r}")
    next_path = payload.get("n", "")
    if next_path and not next_path.startswith(f"/v2/{repository}/tags/list"):
        raise ValueError("the page token is not one this service returned")
    return PageCursor(repository, next_path, payload.get("a", ""))


def client_side_page(tags: list[str], page_size: int, after: str) -> tuple[list[str], str]:
    """Sort `tags`, drop those up to `after`, return (page, last tag of the page when more remain)."""
    remaining = sorted(tag for tag in set(tags) if not after or tag > after)
    page = remaining[:page_size]
    more = len(remaining) > page_size
    return page, page[-1] if more else ""
