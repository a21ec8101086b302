"""`WWW-Authenticate` parsing (RFC 7235 challenges, as registries send them)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_WHITESPACE = " \t"


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lowercase: "bearer", "basic", ...
    params: Mapping[str, str] = field(default_factory=dict)  # lowercase keys

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scope(self) -> str:
        return self.params.get("scope", "")

    @property
    def error(self) -> str:
        return self.params.get("error", "")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.text)

    def skip_whitespace(self) -> None:
        while not self.done() and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def skip_separators(self) -> None:
        while not self.done() and self.text[self.pos] in _WHITESPACE + ",":
            self.pos += 1

    def peek(self) -> str:
        return "" if self.done() else self.text[self.pos]

    def match(self, pattern: re.Pattern[str]) -> str | None:
        found = pattern.match(self.text, self.pos)
        if not found:
            return None
        self.pos = found.end()
        return found.group()

    def quoted(self) -> str:
        """A quoted-string starting at the opening quote (backslash escapes; unterminated = to end)."""
        self.pos += 1
        chars: list[str] = []
        while not self.done():
            char = self.text[self.pos]
            self.pos += 1
            if char == "\\" and not self.done():
                chars.append(self.text[self.pos])
                self.pos += 1
            elif char == '"':
                break
            else:
                chars.append(char)
        return "".join(chars)


def _param(scanner: _Scanner) -> tuple[str, str] | None:
    """`name = value` at the scanner position, or None (position unchanged) when it is not a param."""
    start = scanner.pos
    name = scanner.match(_TOKEN)
    if name is None:
        return None
    scanner.skip_whitespace()
    if scanner.peek() != "=":
        scanner.pos = start
        return None
    scanner.pos += 1
    scanner.skip_whitespace()
    value = scanner.quoted() if scanner.peek() == '"' else (scanner.match(_TOKEN) or "")
    return name.lower(), value


def parse_www_authenticate(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or several `WWW-Authenticate` header values, in order.

    Malformed input never raises: what cannot be parsed is skipped.
    """
    challenges: list[Challenge] = []
    for text in [values] if isinstance(values, str) else values:
        scanner = _Scanner(text)
        while True:
            scanner.skip_separators()
            if scanner.done():
                break
            scheme = scanner.match(_TOKEN)
            if scheme is None:
                scanner.pos += 1  # junk: skip a character and resynchronise
                continue
            params: dict[str, str] = {}
            scanner.skip_whitespace()
            start = scanner.pos
            token68 = scanner.match(_TOKEN68)
            # A token68 (`Negotiate abc==`) stands alone; anything else starts the auth-params.
            if token68 is not None and (scanner.done() or scanner.peek() in _WHITESPACE + ","):
                params[""] = token68
            else:
                scanner.pos = start
            while True:
                scanner.skip_whitespace()
                param = _param(scanner)
                if param is None:
                    break
                params.setdefault(param[0], param[1])
                scanner.skip_whitespace()
                if scanner.peek() != ",":
                    break
                scanner.pos += 1
            challenges.append(Challenge(scheme.lower(), params))
    return challenges
