"""The registry client: the OCI distribution API (tags, manifests) over aiohttp."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from conveyor import refs
from conveyor.registry.challenge import Challenge, parse_www_authenticate
from conveyor.registry.config import (
    Anonymous,
    BasicCredentials,
    BearerCredentials,
    RegistryConfig,
    RegistrySettings,
)
from conveyor.registry.errors import RegistryError
from conveyor.registry.pagination import PageCursor, client_side_page, decode_page_token, encode_page_token
from conveyor.retry import RetryPolicy, retry

log = logging.getLogger("conveyor.registry")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
MANIFEST_ACCEPT = ", ".join(MANIFEST_MEDIA_TYPES)
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_RETRY_DELAY = 10.0
USER_AGENT = "conveyor-registry-client/1"


@dataclass(frozen=True)
class ManifestInfo:
    digest: str  # "sha256:..."
    media_type: str  # the Content-Type the registry served ("" when it sent none)
    size: int  # bytes of the manifest (-1 when unknown)

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST)


@dataclass(frozen=True)
class _Reply:
    method: str
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes
    url: URL
    next_link: URL | None

    @property
    def challenges(self) -> list[Challenge]:
        return parse_www_authenticate(self.headers.getall("WWW-Authenticate", []))

    def error_codes(self) -> list[str]:
        """The `errors[].code` values of a distribution API error body."""
        try:
            document = json.loads(self.body) if self.body else {}
        except ValueError:
            return []
        errors = document.get("errors") if isinstance(document, dict) else None
        if not isinstance(errors, list):
            return []
        return [str(error.get("code", "")) for error in errors if isinstance(error, dict)]


class _Transient(Exception):
    """A failure worth retrying (connection error, timeout, 429, 5xx); ends as kind="unreachable"."""

    def __init__(self, description: str, *, retry_after: float | None = None, status: int | None = None) -> None:
        super().__init__(description)
        self.description = description
        self.retry_after = retry_after
        self.status = status


@dataclass
class _Token:
    value: str
    valid_until: float
    generation: int = 0


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_DELAY))
    except ValueError:
        return None  # HTTP-date form: fall back to our own backoff


def _describe_exception(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RegistryClient:
    """Talks to any number of registries; one aiohttp session, tokens cached per registry and scope.

    Use one instance per process (it is safe to share between tasks) and `await close()` at shutdown.
    """

    def __init__(
        self,
        settings: RegistrySettings | None = None,
        *,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or RegistrySettings()
        self._sleep = sleep
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self._tokens: dict[tuple[str, str, str, str], _Token] = {}
        self._token_locks: dict[tuple[str, str, str, str], asyncio.Lock] = {}
        self._token_generation = 0  # counts token fetches
        # The last auth challenge each registry sent: lets later requests authenticate up front.
        self._challenges: dict[str, Challenge] = {}
        self._ssl_contexts: dict[str, ssl.SSLContext | bool] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RegistryClient:
        """Settings from CONVEYOR_REGISTRIES_FILE and CONVEYOR_REGISTRY_<ID>_*; raises SettingsError."""
        return cls(RegistrySettings.from_env(environ))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------------
    # Public API
    # ------------------------------------------------------------------------------------------

    async def list_tags(
        self, registry: str, repository: str, *, page_size: int = DEFAULT_PAGE_SIZE, page_token: str = ""
    ) -> tuple[list[str], str]:
        """One page of the repository's tags and the token of the next page ("" after the last page).

        Pages follow the registry's `Link` headers when it paginates; otherwise tags are sorted and
        paged here. `page_size` <= 0 means the default (100); at most 1000.
        """
        config, repository = self._target(registry, repository)
        page_size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        try:
            cursor = decode_page_token(page_token, repository)
        except ValueError as exc:
            raise RegistryError("invalid_argument", config.host, f"invalid page token: {exc}") from None
        if cursor.next_path:
            url = URL(config.base_url + cursor.next_path, encoded=True)
        else:
            query = {"n": str(page_size)} | ({"last": cursor.after} if cursor.after else {})
            url = URL(f"{config.base_url}/v2/{repository}/tags/list").with_query(query)
        operation = f"list the tags of {repository}"
        reply = await self._call(config, "GET", url, repository, accept="application/json", operation=operation)
        if reply.status != 200:
            raise self._error(reply, config, repository, None, operation)
        tags = self._parse_tags(reply, config, repository)
        if reply.next_link is not None:
            next_path = self._same_origin_path(reply.next_link, config, repository)
            return tags, encode_page_token(PageCursor(repository, next_path=next_path))
        page, last = client_side_page(tags, page_size, cursor.after)
        return page, encode_page_token(PageCursor(repository, after=last)) if last else ""

    async def manifest_info(self, registry: str, repository: str, reference: str) -> ManifestInfo:
        """Digest, media type and size of the manifest (image or index) that `reference` names."""
        config, repository = self._target(registry, repository)
        if not (refs.is_valid_tag(reference) or refs.is_valid_digest(reference)):
            raise RegistryError(
                "invalid_argument", config.host, f"{reference!r} is neither a valid tag nor a valid digest"
            )
        url = URL(f"{config.base_url}/v2/{repository}/manifests/{reference}")
        operation = (
            f"read {repository}:{reference}" if refs.is_valid_tag(reference) else f"read {repository}@{reference}"
        )
        reply = await self._call(config, "HEAD", url, repository, accept=MANIFEST_ACCEPT, operation=operation)
        if reply.status == 200:
            digest = reply.headers.get("Docker-Content-Digest", "")
            if refs.is_valid_digest(digest):
                return ManifestInfo(digest, self._media_type(reply), self._content_length(reply))
        elif reply.status not in (404, 405):
            raise self._error(reply, config, repository, reference, operation)
        # No digest header, or a 404 without a body to say what is missing: GET tells both.
        reply = await self._call(config, "GET", url, repository, accept=MANIFEST_ACCEPT, operation=operation)
        if reply.status == 404 and "NAME_UNKNOWN" not in reply.error_codes():
            raise await self._missing_manifest_error(reply, config, repository, reference, operation)
        if reply.status != 200:
            raise self._error(reply, config, repository, reference, operation)
        digest = "sha256:" + hashlib.sha256(reply.body).hexdigest()
        if refs.is_valid_digest(reference) and reference.startswith("sha256:") and reference != digest:
            raise RegistryError(
                "protocol",
                config.host,
                f"registry {config.host} served content for {repository}@{reference} whose sha256 is {digest}",
            )
        return ManifestInfo(digest, self._media_type(reply), len(reply.body))

    async def _missing_manifest_error(
        self, reply: _Reply, config: RegistryConfig, repository: str, reference: str, operation: str
    ) -> RegistryError:
        """Registries (Distribution among them) answer MANIFEST_UNKNOWN for a missing repository too:
        one cheap tag-list probe tells the user which of the two is missing."""
        probe_url = URL(f"{config.base_url}/v2/{repository}/tags/list").with_query({"n": "1"})
        try:
            probe = await self._call(
                config, "GET", probe_url, repository, accept="application/json", operation=operation
            )
        except RegistryError:
            return self._error(reply, config, repository, reference, operation)
        if probe.status == 404:
            return self._error(probe, config, repository, reference, operation)
        codes = reply.error_codes() or (["MANIFEST_UNKNOWN"] if probe.status == 200 else [])
        return error_for_reply(
            404,
            challenges=[],
            error_codes=codes,
            config=config,
            repository=repository,
            reference=reference,
            operation=operation,
        )

    async def resolve_digest(self, registry: str, repository: str, reference: str) -> str:
        """The manifest digest ("sha256:...") a tag (or digest) points at, for single- and multi-arch images."""
        return (await self.manifest_info(registry, repository, reference)).digest

    async def tag_exists(self, registry: str, repository: str, tag: str) -> bool:
        """True when the tag exists, False when the registry says it (or its repository) does not.

        Any other failure (credentials, unreachable registry) raises RegistryError.
        """
        if not refs.is_valid_tag(tag):
            return False
        try:
            await self.manifest_info(registry, repository, tag)
        except RegistryError as exc:
            if exc.kind == "not_found":
                return False
            raise
        return True

    # ------------------------------------------------------------------------------------------
    # Requests, retries and authentication
    # ------------------------------------------------------------------------------------------

    def _target(self, registry: str, repository: str) -> tuple[RegistryConfig, str]:
        host, repository = refs.normalize_repo(registry, repository)
        config = self.settings.for_host(host)
        if not refs.is_valid_registry(config.host):
            raise RegistryError("invalid_argument", config.host, f"{registry!r} is not a registry host[:port]")
        if not refs.is_valid_repository(repository):
            raise RegistryError(
                "invalid_argument", config.host, f"{repository!r} is not a valid repository name (lowercase path)"
            )
        return config, repository

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self._session

    def _ssl_for(self, config: RegistryConfig) -> ssl.SSLContext | bool:
        if config.scheme != "https":
            return True
        if config.host not in self._ssl_contexts:
            if not config.tls_verify:
                self._ssl_contexts[config.host] = False
            elif config.ca_file is not None:
                self._ssl_contexts[config.host] = ssl.create_default_context(cafile=str(config.ca_file))
            else:
                self._ssl_contexts[config.host] = True
        return self._ssl_contexts[config.host]

    def _retry_policy(self) -> RetryPolicy:
        # Waits of backoff * 2**n * U[1, 1.5), as before the shared helper: a ceiling of 1.5x with a third of jitter.
        return RetryPolicy(
            initial=1.5 * self.settings.backoff,
            maximum=MAX_RETRY_DELAY,
            multiplier=2.0,
            jitter=1 / 3,
            max_attempts=self.settings.retries + 1,
        )

    async def _call(
        self, config: RegistryConfig, method: str, url: URL, repository: str, *, accept: str, operation: str
    ) -> _Reply:
        """One API call with authentication, retrying transient failures with exponential backoff."""
        scope = f"repository:{repository}:pull"
        attempts = self.settings.retries + 1

        async def attempt() -> _Reply:
            reply = await self._authorized(config, method, url, scope, accept)
            if reply.status in RETRYABLE_STATUSES:
                raise _Transient(
                    f"HTTP {reply.status}",
                    retry_after=_retry_after(reply.headers.get("Retry-After")),
                    status=reply.status,
                )
            return reply

        def log_retry(exc: BaseException, number: int, delay: float) -> None:
            description = exc.description if isinstance(exc, _Transient) else str(exc)
            log.warning(
                "registry %s: %s while trying to %s; retrying in %.1fs (attempt %d of %d)",
                config.host,
                description,
                operation,
                delay,
                number,
                attempts,
            )

        try:
            return await retry(
                attempt,
                policy=self._retry_policy(),
                retry_on=_Transient,
                on_retry=log_retry,
                retry_after=lambda exc: exc.retry_after if isinstance(exc, _Transient) else None,
                sleep=self._sleep,
                clock=self._clock,
            )
        except _Transient as problem:
            hint = " (rate limited: try again later)" if problem.status == 429 else ""
            raise RegistryError(
                "unreachable",
                config.host,
                f"could not {operation} on registry {config.host} at {config.base_url}: {problem.description}, "
                f"{attempts} attempt(s){hint}; check that the registry is up and that its host and scheme are right "
                f"({config.where()})",
                status=problem.status,
            ) from None

    async def _authorized(self, config: RegistryConfig, method: str, url: URL, scope: str, accept: str) -> _Reply:
        """Send with the best credentials known; on a 401 challenge, authenticate and send once more."""
        headers = {"Accept": accept}
        authorization = await self._upfront_authorization(config, scope)
        reply = await self._exchange(config, method, url, headers | authorization)
        if reply.status != 401 or isinstance(config.credentials, BearerCredentials):
            return reply
        challenges = reply.challenges
        bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
        basic = next((c for c in challenges if c.scheme == "basic"), None)
        if bearer is not None:
            self._challenges[config.host] = bearer
            token = await self._token(config, bearer, bearer.scope or scope, scope, force=True)
            return await self._exchange(config, method, url, headers | {"Authorization": f"Bearer {token}"})
        if basic is not None and isinstance(config.credentials, BasicCredentials) and not authorization:
            self._challenges[config.host] = basic
            return await self._exchange(config, method, url, headers | self._basic_authorization(config))
        return reply

    async def _upfront_authorization(self, config: RegistryConfig, scope: str) -> dict[str, str]:
        credentials = config.credentials
        if isinstance(credentials, BearerCredentials):
            return {"Authorization": f"Bearer {self._reveal(config, credentials.token, 'bearer token')}"}
        known = self._challenges.get(config.host)
        if known is None:
            return {}
        if known.scheme == "basic" and isinstance(credentials, BasicCredentials):
            return self._basic_authorization(config)
        if known.scheme == "bearer":
            token = await self._token(config, known, scope, scope, force=False)
            return {"Authorization": f"Bearer {token}"}
        return {}

    def _reveal(self, config: RegistryConfig, secret: Any, what: str) -> str:
        try:
            value: str = secret.reveal()
        except OSError as exc:
            raise RegistryError(
                "unauthorized",
                config.host,
                f"cannot read the {what} for registry {config.host} from {secret.origin}: "
                f"{exc.strerror or type(exc).__name__} ({config.where()})",
            ) from None
        return value

    def _basic_authorization(self, config: RegistryConfig) -> dict[str, str]:
        credentials = config.credentials
        assert isinstance(credentials, BasicCredentials)
        password = self._reveal(config, credentials.password, "password")
        return {"Authorization": aiohttp.encode_basic_auth(credentials.username, password)}

    async def _token(
        self, config: RegistryConfig, challenge: Challenge, fetch_scope: str, cache_scope: str, *, force: bool
    ) -> str:
        """A bearer token from the challenge's realm for `fetch_scope`, cached until shortly before expiry."""
        key = (config.host, challenge.realm, challenge.service, cache_scope)
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        generation = self._token_generation
        async with lock:
            cached = self._tokens.get(key)
            # A forced refresh still reuses a token another task fetched while this one waited.
            fresh = cached is not None and cached.valid_until > self._clock()
            if cached is not None and fresh and (not force or cached.generation > generation):
                return cached.value
            token = await self._fetch_token(config, challenge, fetch_scope)
            self._token_generation += 1
            token.generation = self._token_generation
            self._tokens[key] = token
            return token.value

    async def _fetch_token(self, config: RegistryConfig, challenge: Challenge, scope: str) -> _Token:
        realm = URL(challenge.realm)
        credentials = config.credentials
        if realm.scheme not in ("http", "https") or not realm.host:
            raise RegistryError(
                "protocol", config.host, f"registry {config.host} sent an unusable token realm {challenge.realm!r}"
            )
        if realm.scheme == "http" and config.scheme == "https" and isinstance(credentials, BasicCredentials):
            raise RegistryError(
                "protocol",
                config.host,
                f"registry {config.host} asks for credentials to be sent to {realm.origin()} over plain http; refusing",
            )
        query = {key: value for key, value in (("service", challenge.service), ("scope", scope)) if value}
        headers: dict[str, str] = {}
        if isinstance(credentials, BasicCredentials):
            query["account"] = credentials.username
            headers = self._basic_authorization(config)
        same_host = realm.host == URL(config.base_url).host
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._get_session().get(
                realm.update_query(query),
                headers=headers,
                ssl=self._ssl_for(config) if same_host else True,
                timeout=timeout,
            ) as response:
                status = response.status
                body = await response.read() if status == 200 else b""
                retry_after = _retry_after(response.headers.get("Retry-After"))
        except aiohttp.ClientSSLError as exc:
            raise RegistryError(
                "unreachable",
                config.host,
                f"TLS with the token service {realm.origin()} of registry {config.host} failed: {exc}",
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(
                f"token service {realm.origin()}: {_describe_exception(exc, self.settings.timeout)}"
            ) from None
        log.debug("registry %s: token service %s answered %d for scope %s", config.host, realm.origin(), status, scope)
        if status in (401, 403):
            if isinstance(credentials, Anonymous):
                message = (
                    f"registry {config.host} requires credentials (its token service {realm.origin()} refused an "
                    f"anonymous token); none are configured ({config.where()})"
                )
            else:
                message = (
                    f"the token service {realm.origin()} of registry {config.host} rejected the credentials "
                    f"configured for it: {credentials.describe()} ({config.where()})"
                )
            raise RegistryError("unauthorized", config.host, message, status=status)
        if status in RETRYABLE_STATUSES:
            raise _Transient(f"token service {realm.origin()} answered HTTP {status}", retry_after=retry_after)
        if status != 200:
            raise RegistryError(
                "protocol",
                config.host,
                f"the token service {realm.origin()} of registry {config.host} answered HTTP {status}",
                status=status,
            )
        try:
            document = json.loads(body)
            value = document.get("token") or document.get("access_token")
            expires_in = float(document.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            value, expires_in = None, 0.0
        if not isinstance(value, str) or not value:
            raise RegistryError(
                "protocol",
                config.host,
                f"the token service {realm.origin()} of registry {config.host} answered without a token",
            )
        expires_in = max(expires_in, 1.0)
        # Renew a little before the registry would reject it.
        return _Token(value, self._clock() + max(expires_in - 10.0, expires_in / 2))

    async def _exchange(self, config: RegistryConfig, method: str, url: URL, headers: Mapping[str, str]) -> _Reply:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        try:
            async with self._get_session().request(
                method, url, headers=dict(headers), ssl=self._ssl_for(config), timeout=timeout
            ) as response:
                body = b"" if method == "HEAD" else await self._read_body(response, config)
                next_link = response.links.get("next")
                reply = _Reply(
                    method,
                    response.status,
                    response.headers,
                    body,
                    response.url,
                    URL(str(next_link["url"])) if next_link is not None and "url" in next_link else None,
                )
        except aiohttp.ClientSSLError as exc:
            hint = "set scheme: http for a plain-HTTP registry, or ca_file for a private CA"
            raise RegistryError(
                "unreachable", config.host, f"TLS with registry {config.host} failed: {exc} ({hint}; {config.where()})"
            ) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Transient(_describe_exception(exc, self.settings.timeout)) from None
        log.debug("registry %s: %s %s -> %d", config.host, method, url.path, reply.status)
        return reply

    async def _read_body(self, response: aiohttp.ClientResponse, config: RegistryConfig) -> bytes:
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise RegistryError(
                    "protocol",
                    config.host,
                    f"registry {config.host} answered {response.url.path} with more than {MAX_BODY_BYTES} bytes",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    # ------------------------------------------------------------------------------------------
    # Replies
    # ------------------------------------------------------------------------------------------

    @staticmethod
    def _media_type(reply: _Reply) -> str:
        return reply.headers.get("Content-Type", "").split(";", 1)[0].strip()

    @staticmethod
    def _content_length(reply: _Reply) -> int:
        try:
            return int(reply.headers.get("Content-Length", "-1"))
        except ValueError:
            return -1

    @staticmethod
    def _parse_tags(reply: _Reply, config: RegistryConfig, repository: str) -> list[str]:
        try:
            document = json.loads(reply.body)
        except ValueError:
            document = None
        tags = document.get("tags", []) if isinstance(document, dict) else None
        if tags is None and isinstance(document, dict):
            tags = []  # Distribution answers `"tags": null` for a repository whose tags were all deleted
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise RegistryError(
                "protocol",
                config.host,
                f"registry {config.host} answered the tag list of {repository} with no tags list",
            )
        return tags

    @staticmethod
    def _same_origin_path(link: URL, config: RegistryConfig, repository: str) -> str:
        base = URL(config.base_url)
        if link.is_absolute() and link.origin() != base.origin():
            raise RegistryError(
                "protocol",
                config.host,
                f"registry {config.host} pointed the next page of {repository}'s tags at {link.origin()}",
            )
        path = link.raw_path + (f"?{link.raw_query_string}" if link.raw_query_string else "")
        if not path.startswith(f"/v2/{repository}/tags/list"):
            raise RegistryError(
                "protocol", config.host, f"registry {config.host} sent an unexpected next-page link {path!r}"
            )
        return path

    @staticmethod
    def _error(
        reply: _Reply, config: RegistryConfig, repository: str, reference: str | None, operation: str
    ) -> RegistryError:
        return error_for_reply(
            reply.status,
            challenges=reply.challenges,
            error_codes=reply.error_codes(),
            config=config,
            repository=repository,
            reference=reference,
            operation=operation,
        )


def error_for_reply(
    status: int,
    *,
    challenges: list[Challenge],
    error_codes: list[str],
    config: RegistryConfig,
    repository: str,
    reference: str | None,
    operation: str,
) -> RegistryError:
    """The RegistryError for a final non-success answer: what failed, for which registry, what to do."""
    host = config.host
    credentials = config.credentials
    where = config.where()
    if status == 401:
        insufficient = any(c.error == "insufficient_scope" for c in challenges)
        if isinstance(credentials, Anonymous):
            return RegistryError(
                "unauthorized",
                host,
                f"registry {host} requires credentials to {operation}, and none are configured for it ({where})",
                status=status,
            )
        if insufficient:
            return RegistryError(
                "forbidden",
                host,
                f"registry {host} does not let {credentials.describe()} {operation} "
                f"(no pull access to {repository}, or the repository does not exist) ({where})",
                status=status,
            )
        return RegistryError(
            "unauthorized",
            host,
            f"registry {host} rejected the credentials configured for it: {credentials.describe()}; "
            f"check them ({where})",
            status=status,
        )
    if status == 403:
        return RegistryError(
            "forbidden",
            host,
            f"registry {host} refused to let {credentials.describe()} {operation}: grant pull access to "
            f"{repository} ({where})",
            status=status,
        )
    if status == 404:
        if "NAME_UNKNOWN" in error_codes:
            message = f"repository {repository} does not exist on registry {host}"
        elif reference is not None and refs.is_valid_digest(reference):
            message = f"manifest {reference} does not exist in {host}/{repository}"
        elif reference is not None and ("MANIFEST_UNKNOWN" in error_codes or "TAG_INVALID" in error_codes):
            message = f"tag {reference!r} does not exist in {host}/{repository}"
        elif reference is not None:
            message = f"{host}/{repository}:{reference} does not exist (no such repository or tag)"
        else:
            message = f"repository {repository} does not exist on registry {host}"
        return RegistryError("not_found", host, message, status=status)
    codes = f" ({', '.join(error_codes)})" if error_codes else ""
    return RegistryError(
        "protocol", host, f"registry {host} answered HTTP {status}{codes} when asked to {operation}", status=status
    )
