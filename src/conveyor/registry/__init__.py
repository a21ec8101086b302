"""Registry access: list tags and resolve digests over the OCI distribution API.

`RegistryClient` (one per process, asyncio, aiohttp) talks to any registry: Distribution, Harbor,
GHCR, Docker Hub, Quay, ECR/GAR (with a token), ... It authenticates the way registries expect:

- anonymous, HTTP Basic (htpasswd registries), or a static bearer token;
- the OCI/Docker token flow: on `401` with `WWW-Authenticate: Bearer realm=...,service=...,scope=...`
  the client fetches a token from the realm (with the configured username/password, or anonymously),
  caches it per registry and scope until shortly before `expires_in`, and retries the request.
  Later requests to that registry fetch their token up front, skipping the 401 round trip.

Operations: `list_tags` (pages follow `Link: <...>; rel="next"`; registries that ignore `n`, such as
Distribution 2.8, are paged client-side in sorted order; the page token is opaque), `resolve_digest`
and `manifest_info` (`HEAD` of the manifest accepting OCI manifest + index and Docker v2 manifest +
manifest list, reading `Docker-Content-Digest`; when it is missing, `GET` and sha256 of the body),
`tag_exists`. Timeouts, connection errors, 429 and 5xx are retried with exponential backoff.

Failures raise `RegistryError(kind, registry, message)`; kind is one of unauthorized, forbidden,
not_found, unreachable, protocol, invalid_argument. Messages name the registry, the repository or
tag, and where its settings come from; they never contain a password or token, and neither do logs
nor the repr of any settings object (`Secret` redacts itself).

Environment variables
---------------------
| Variable                              | Default | Meaning                                                   |
|---------------------------------------|---------|-----------------------------------------------------------|
| CONVEYOR_REGISTRIES_FILE              | (none)  | YAML file listing registries and their credentials (below)|
| CONVEYOR_REGISTRIES_TIMEOUT           | 10s     | timeout of one HTTP request to a registry or token service|
| CONVEYOR_REGISTRIES_RETRIES           | 2       | retries after a timeout, connection error, 429 or 5xx     |
| CONVEYOR_REGISTRIES_BACKOFF           | 500ms   | first retry delay; doubles each retry (plus jitter)       |
| CONVEYOR_REGISTRY_<ID>_HOST           | -       | declares registry <ID> (letters/digits, any name) by host |
| CONVEYOR_REGISTRY_<ID>_SCHEME         | https   | `https`, or `http` for a plain-HTTP (e.g. loopback) one   |
| CONVEYOR_REGISTRY_<ID>_USERNAME       | -       | username for Basic auth / the token service               |
| CONVEYOR_REGISTRY_<ID>_PASSWORD       | -       | its password (or token used as a password)                |
| CONVEYOR_REGISTRY_<ID>_PASSWORD_FILE  | -       | file holding the password (re-read on use: rotation works)|
| CONVEYOR_REGISTRY_<ID>_TOKEN          | -       | static bearer token sent on every request                 |
| CONVEYOR_REGISTRY_<ID>_TOKEN_FILE     | -       | file holding the static bearer token                      |
| CONVEYOR_REGISTRY_<ID>_CA_FILE        | -       | PEM bundle to verify the registry's TLS certificate       |
| CONVEYOR_REGISTRY_<ID>_TLS_VERIFY     | true    | `false` skips TLS verification (not recommended)          |

A registry configured in the environment replaces a file entry with the same host. A registry that
is configured nowhere is reached over https without credentials. Any other `CONVEYOR_REGISTRY_*`
variable is an error, so typos fail at start-up rather than at the first push.

File format (CONVEYOR_REGISTRIES_FILE)
--------------------------------------
```yaml
registries:
  - host: registry.example.com          # host[:port], as in image references
    username: conveyor                  # Basic auth, or the credentials for its token service
    password_file: /run/secrets/registry-password   # or password_env: VAR, or password: "..."
  - host: ghcr.io
    username: my-bot
    password_env: GHCR_PAT              # a personal access token used as the password
  - host: europe-docker.pkg.dev
    token_file: /run/secrets/gar-token  # static bearer token (or token_env / token)
  - host: 127.0.0.1:5000
    scheme: http                        # plain HTTP (https is the default)
  - host: registry.internal:5443
    ca_file: /etc/conveyor/internal-ca.pem
```
Keys per entry: host (required), scheme, username, password | password_env | password_file,
token | token_env | token_file, ca_file, tls_verify. Configure either a username + password or a
token, not both. Every problem in the file is reported at start-up, all at once, with its line.
"""

from conveyor.registry.challenge import Challenge, parse_www_authenticate
from conveyor.registry.client import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    MANIFEST_MEDIA_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    ManifestInfo,
    RegistryClient,
    error_for_reply,
)
from conveyor.registry.config import (
    ANONYMOUS,
    Anonymous,
    BasicCredentials,
    BearerCredentials,
    Credentials,
    RegistryConfig,
    RegistrySettings,
    Secret,
)
from conveyor.registry.errors import KINDS, RegistryError

__all__ = [
    "ANONYMOUS",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "KINDS",
    "MANIFEST_ACCEPT",
    "MANIFEST_MEDIA_TYPES",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Anonymous",
    "BasicCredentials",
    "BearerCredentials",
    "Challenge",
    "Credentials",
    "ManifestInfo",
    "RegistryClient",
    "RegistryConfig",
    "RegistryError",
    "RegistrySettings",
    "Secret",
    "error_for_reply",
    "parse_www_authenticate",
]
