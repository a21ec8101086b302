"""RegistryClient against small in-process registries for behaviour Distribution 2.8 cannot show:
server-side `Link` paging, retries and backoff, missing digest headers, static tokens, token expiry,
TLS with a private CA. (tests/integration/registry runs the same client against the real registry.)"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import json
import logging
import pathlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from conveyor.registry import (
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    BasicCredentials,
    BearerCredentials,
    RegistryClient,
    RegistryConfig,
    RegistryError,
    RegistrySettings,
    Secret,
)
from tests.support.net import free_port

PASSWORD = "pa55-word-never-shown"
TOKEN = "static-token-never-shown"
DIGEST = "sha256:" + "ab" * 32

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serve(
    routes: list[tuple[str, str, Handler]], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """Serve `routes` on a free loopback port; yields `127.0.0.1:PORT`."""
    app = web.Application()
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_context).start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def client_for(
    host: str, *, scheme: str = "http", retries: int = 2, sleep: Sleeps | None = None, **kwargs
) -> RegistryClient:  # type: ignore[no-untyped-def]
    config = RegistryConfig(host, scheme, source="test settings", **kwargs)
    settings = RegistrySettings(registries={host: config}, timeout=2.0, retries=retries, backoff=0.5)
    return RegistryClient(settings, sleep=sleep or Sleeps())


async def test_follows_link_pages_from_a_paginating_registry() -> None:
    all_tags = [f"v{i:02d}" for i in range(7)]
    seen_queries: list[dict[str, str]] = []

    async def tags(request: web.Request) -> web.Response:
        seen_queries.append(dict(request.query))
        n = int(request.query.get("n", "100"))
        last = request.query.get("last", "")
        rest = [t for t in all_tags if t > last]
        page = rest[:n]
        headers = {}
        if len(rest) > n:
            headers["Link"] = f'</v2/team/app/tags/list?n={n}&last={page[-1]}>; rel="next"'
        return web.json_response({"name": "team/app", "tags": page}, headers=headers)

    async with serve([("GET", "/v2/team/app/tags/list", tags)]) as host, client_for(host) as client:
        pages = []
        token = ""
        while True:
            page, token = await client.list_tags(host, "team/app", page_size=3, page_token=token)
            pages.append(page)
            if not token:
                break
    assert pages == [["v00", "v01", "v02"], ["v03", "v04", "v05"], ["v06"]]
    assert seen_queries[0] == {"n": "3"}
    assert seen_queries[1] == {"n": "3", "last": "v02"}  # the registry's own link was followed


async def test_a_next_link_to_another_host_is_refused() -> None:
    async def tags(request: web.Request) -> web.Response:
        headers = {"Link": '<https://evil.example/v2/team/app/tags/list?last=a>; rel="next"'}
        return web.json_response({"name": "team/app", "tags": ["a"]}, headers=headers)

    async with serve([("GET", "/v2/team/app/tags/list", tags)]) as host, client_for(host) as client:
        with pytest.raises(RegistryError) as caught:
            await client.list_tags(host, "team/app")
    assert caught.value.kind == "protocol"
    assert "evil.example" in caught.value.message


async def test_null_tags_and_bad_page_tokens() -> None:
    async def tags(request: web.Request) -> web.Response:
        return web.json_response({"name": "team/app", "tags": None})

    async with serve([("GET", "/v2/team/app/tags/list", tags)]) as host, client_for(host) as client:
        assert await client.list_tags(host, "team/app") == ([], "")
        with pytest.raises(RegistryError) as caught:
            await client.list_tags(host, "team/app", page_token="garbage!")
        assert caught.value.kind == "invalid_argument"
        with pytest.raises(RegistryError) as caught:
            await client.list_tags(host, "Team/App")
        assert caught.value.kind == "invalid_argument"


async def test_transient_failures_are_retried_with_growing_backoff() -> None:
    calls = 0

    async def manifest(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            return web.Response(status=503)
        return web.Response(headers={"Docker-Content-Digest": DIGEST, "Content-Type": OCI_INDEX})

    sleeps = Sleeps()
    async with (
        serve([("HEAD", "/v2/team/app/manifests/v1", manifest)]) as host,
        client_for(host, sleep=sleeps) as client,
    ):
        info = await client.manifest_info(host, "team/app", "v1")
    assert (info.digest, info.media_type, info.is_index) == (DIGEST, OCI_INDEX, True)
    assert calls == 3
    assert len(sleeps.delays) == 2
    assert 0.5 <= sleeps.delays[0] <= 0.75
    assert 1.0 <= sleeps.delays[1] <= 1.5


async def test_retry_after_is_honoured_and_persistent_failure_is_unreachable() -> None:
    calls = 0

    async def manifest(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(status=429, headers={"Retry-After": "3"})

    sleeps = Sleeps()
    routes = [("HEAD", "/v2/team/app/manifests/v1", manifest)]
    async with serve(routes) as host, client_for(host, sleep=sleeps, retries=3) as client:
        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(host, "team/app", "v1")
    assert calls == 4
    assert sleeps.delays == [3.0, 3.0, 3.0]
    assert caught.value.kind == "unreachable"
    assert caught.value.registry == host
    assert "rate limited" in caught.value.message
    assert "4 attempt(s)" in caught.value.message


async def test_retry_waits_are_capped_logged_and_none_without_retries(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0
    retry_after = ["60", None, None, None]

    async def manifest(request: web.Request) -> web.Response:
        nonlocal calls
        wait = retry_after[calls % len(retry_after)]
        calls += 1
        return web.Response(status=503, headers={"Retry-After": wait} if wait else {})

    sleeps = Sleeps()
    routes = [("HEAD", "/v2/team/app/manifests/v1", manifest)]
    async with serve(routes) as host:
        settings = RegistrySettings(registries={host: RegistryConfig(host, "http")}, retries=4, backoff=2.0)
        with caplog.at_level(logging.WARNING, logger="conveyor.registry"):
            async with RegistryClient(settings, sleep=sleeps) as client:
                with pytest.raises(RegistryError, match="5 attempt"):
                    await client.resolve_digest(host, "team/app", "v1")
        assert calls == 5
        # Retry-After: 60 is capped at 10 s; then 2 s doubling with up to +50 % jitter, at most 10 s.
        assert sleeps.delays[0] == 10.0
        assert 4.0 <= sleeps.delays[1] <= 6.0
        assert 10.0 * 2 / 3 <= sleeps.delays[2] <= 10.0  # the cap applies before the jitter
        assert 10.0 * 2 / 3 <= sleeps.delays[3] <= 10.0
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 4
        assert "HTTP 503 while trying to read team/app:v1; retrying in 10.0s (attempt 1 of 5)" in warnings[0]
        assert "(attempt 4 of 5)" in warnings[3]

        once = RegistrySettings(registries={host: RegistryConfig(host, "http")}, retries=0)
        calls, sleeps.delays = 0, []
        async with RegistryClient(once, sleep=sleeps) as client:
            with pytest.raises(RegistryError, match="1 attempt"):
                await client.resolve_digest(host, "team/app", "v1")
        assert (calls, sleeps.delays) == (1, [])


async def test_connection_refused_and_timeouts_end_as_unreachable() -> None:
    port = free_port()  # nothing listens there
    sleeps = Sleeps()
    async with client_for(f"127.0.0.1:{port}", sleep=sleeps) as client:
        with pytest.raises(RegistryError) as caught:
            await client.list_tags(f"127.0.0.1:{port}", "team/app")
    assert caught.value.kind == "unreachable"
    assert f"127.0.0.1:{port}" in caught.value.message
    assert "3 attempt(s)" in caught.value.message
    assert len(sleeps.delays) == 2

    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response()

    async with serve([("HEAD", "/v2/team/app/manifests/v1", slow)]) as host:
        config = RegistryConfig(host, "http")
        settings = RegistrySettings(registries={host: config}, timeout=0.2, retries=1)
        async with RegistryClient(settings, sleep=Sleeps()) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(host, "team/app", "v1")
        release.set()
    assert caught.value.kind == "unreachable"
    assert "no answer within 0.2s" in caught.value.message


async def test_missing_digest_header_falls_back_to_get_and_sha256() -> None:
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    accepts: list[str] = []

    async def manifest(request: web.Request) -> web.Response:
        accepts.append(request.headers.get("Accept", ""))
        if request.method == "HEAD":
            return web.Response(headers={"Content-Type": OCI_INDEX})  # no Docker-Content-Digest
        return web.Response(body=body, headers={"Content-Type": OCI_INDEX})

    async with serve([("*", "/v2/team/app/manifests/{ref}", manifest)]) as host, client_for(host) as client:
        digest = await client.resolve_digest(host, "team/app", "v1")
        expected = "sha256:" + hashlib.sha256(body).hexdigest()
        assert digest == expected
        # Asking by digest checks the content really has that digest.
        assert await client.resolve_digest(host, "team/app", expected) == expected
        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(host, "team/app", DIGEST)
        assert caught.value.kind == "protocol"
    for accept in accepts:
        assert {part.strip() for part in accept.split(",")} == set(MANIFEST_MEDIA_TYPES)


async def test_static_bearer_token_is_sent_and_a_rejection_names_its_source() -> None:
    seen: list[str] = []

    async def manifest(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.Response(status=401, headers={"WWW-Authenticate": 'Bearer realm="https://x/token"'})
        return web.Response(headers={"Docker-Content-Digest": DIGEST})

    async with serve([("HEAD", "/v2/team/app/manifests/v1", manifest)]) as host:
        good = BearerCredentials(Secret("environment variable GOOD_TOKEN", TOKEN))
        async with client_for(host, credentials=good) as client:
            assert await client.resolve_digest(host, "team/app", "v1") == DIGEST
        bad = BearerCredentials(Secret("environment variable OLD_TOKEN", "expired-token"))
        async with client_for(host, credentials=bad) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(host, "team/app", "v1")
    assert seen[0] == f"Bearer {TOKEN}"
    assert caught.value.kind == "unauthorized"
    assert "OLD_TOKEN" in caught.value.message
    assert "expired-token" not in caught.value.message


async def test_basic_challenge_is_answered_then_sent_up_front() -> None:
    unauthenticated = 0
    expected = "Basic " + base64.b64encode(f"ci:{PASSWORD}".encode()).decode()

    async def manifest(request: web.Request) -> web.Response:
        nonlocal unauthenticated
        if request.headers.get("Authorization") != expected:
            unauthenticated += 1
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="test"'})
        return web.Response(headers={"Docker-Content-Digest": DIGEST})

    credentials = BasicCredentials("ci", Secret("environment variable REG_PW", PASSWORD))
    routes = [("HEAD", "/v2/team/app/manifests/{ref}", manifest)]
    async with serve(routes) as host, client_for(host, credentials=credentials) as client:
        for _ in range(3):
            assert await client.resolve_digest(host, "team/app", "v1") == DIGEST
    assert unauthenticated == 1  # only the very first request went without credentials


class TokenRegistry:
    """A registry behind a token service, both on one aiohttp app."""

    def __init__(self, *, expires_in: int | None = 300, token_body: dict[str, object] | None = None) -> None:
        self.expires_in = expires_in
        self.token_body = token_body
        self.issued = 0
        self.token_requests: list[dict[str, str]] = []
        self.host = ""

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query) | {"auth": request.headers.get("Authorization", "")})
        expected = "Basic " + base64.b64encode(f"ci:{PASSWORD}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"details": "bad credentials"}, status=401)
        if self.token_body is not None:
            return web.json_response(self.token_body)
        self.issued += 1
        body: dict[str, object] = {"token": f"t{self.issued}"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)

    async def manifest(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer t"):
            challenge = (
                f'Bearer realm="http://{self.host}/token",service="fake",'
                f'scope="repository:{request.match_info["repo"]}:pull"'
            )
            return web.Response(status=401, headers={"WWW-Authenticate": challenge})
        return web.Response(headers={"Docker-Content-Digest": DIGEST})

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/token", self.token), ("HEAD", "/v2/{repo:.+}/manifests/{ref}", self.manifest)]


async def test_tokens_are_cached_per_scope_until_expiry() -> None:
    now = [1000.0]
    registry = TokenRegistry(expires_in=60)
    credentials = BasicCredentials("ci", Secret("environment variable REG_PW", PASSWORD))
    async with serve(registry.routes()) as host:
        registry.host = host
        settings = RegistrySettings(registries={host: RegistryConfig(host, "http", credentials)})
        async with RegistryClient(settings, sleep=Sleeps(), clock=lambda: now[0]) as client:
            await client.resolve_digest(host, "team/app", "v1")
            await client.resolve_digest(host, "team/app", "v2")
            assert registry.issued == 1  # same scope: cached
            await client.resolve_digest(host, "team/other", "v1")
            assert registry.issued == 2  # new scope, fetched up front from the known realm
            now[0] += 45
            await client.resolve_digest(host, "team/app", "v1")
            assert registry.issued == 2  # still valid (60s, renewed 10s early)
            now[0] += 10
            await client.resolve_digest(host, "team/app", "v1")
            assert registry.issued == 3  # renewed
            # Concurrent requests for a new scope share one token fetch.
            await asyncio.gather(*(client.resolve_digest(host, "team/third", f"v{i}") for i in range(5)))
            assert registry.issued == 4
    first = registry.token_requests[0]
    assert (first["service"], first["scope"], first["account"]) == ("fake", "repository:team/app:pull", "ci")


async def test_token_without_expires_in_lives_60s_and_tokenless_answers_are_protocol_errors() -> None:
    now = [0.0]
    registry = TokenRegistry(expires_in=None)
    credentials = BasicCredentials("ci", Secret("environment variable REG_PW", PASSWORD))
    async with serve(registry.routes()) as host:
        registry.host = host
        settings = RegistrySettings(registries={host: RegistryConfig(host, "http", credentials)})
        async with RegistryClient(settings, sleep=Sleeps(), clock=lambda: now[0]) as client:
            await client.resolve_digest(host, "team/app", "v1")
            now[0] += 49
            await client.resolve_digest(host, "team/app", "v1")
            assert registry.issued == 1
            now[0] += 2
            await client.resolve_digest(host, "team/app", "v1")
            assert registry.issued == 2
        registry.token_body = {"nothing": "here"}
        async with RegistryClient(settings, sleep=Sleeps()) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(host, "team/app", "v1")
    assert caught.value.kind == "protocol"
    assert "without a token" in caught.value.message


async def test_secrets_never_reach_logs_or_errors(caplog: pytest.LogCaptureFixture) -> None:
    registry = TokenRegistry()
    caplog.set_level(logging.DEBUG)
    async with serve(registry.routes()) as host:
        registry.host = host
        for password in (PASSWORD, "wrong-" + PASSWORD):
            credentials = BasicCredentials("ci", Secret("environment variable REG_PW", password))
            settings = RegistrySettings(registries={host: RegistryConfig(host, "http", credentials)})
            async with RegistryClient(settings, sleep=Sleeps()) as client:
                try:
                    await client.resolve_digest(host, "team/app", "v1")
                except RegistryError as exc:
                    failure = exc
    assert failure.kind == "unauthorized"
    assert "REG_PW" in failure.message and "user 'ci'" in failure.message
    shown = caplog.text + failure.message + repr(failure)
    assert PASSWORD not in shown
    assert "t1" not in {record.getMessage() for record in caplog.records}
    assert all("Bearer t" not in record.getMessage() for record in caplog.records)


def self_signed_tls(directory: pathlib.Path) -> tuple[ssl.SSLContext, pathlib.Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


async def test_https_with_a_private_ca_and_the_http_realm_guard(tmp_path: pathlib.Path) -> None:
    server_tls, ca_file = self_signed_tls(tmp_path)
    registry = TokenRegistry()
    credentials = BasicCredentials("ci", Secret("environment variable REG_PW", PASSWORD))
    async with serve(registry.routes(), ssl_context=server_tls) as host:
        registry.host = host  # the challenge points at an http:// realm while the registry is https
        async with client_for(host, scheme="https", ca_file=ca_file, credentials=credentials) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(host, "team/app", "v1")
        assert caught.value.kind == "protocol"
        assert "refusing" in caught.value.message
        assert registry.token_requests == []  # the password never left over plain http
        async with client_for(host, scheme="https") as client:  # no ca_file: the public roots reject it
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(host, "team/app", "v1")
        assert caught.value.kind == "unreachable"
        assert "TLS" in caught.value.message and "ca_file" in caught.value.message

    async def manifest(request: web.Request) -> web.Response:
        return web.Response(headers={"Docker-Content-Digest": DIGEST})

    async with serve([("HEAD", "/v2/team/app/manifests/v1", manifest)], ssl_context=server_tls) as host:
        async with client_for(host, scheme="https", ca_file=ca_file) as client:
            assert await client.resolve_digest(host, "team/app", "v1") == DIGEST
        async with client_for(host, scheme="https", tls_verify=False) as client:
            assert await client.resolve_digest(host, "team/app", "v1") == DIGEST
