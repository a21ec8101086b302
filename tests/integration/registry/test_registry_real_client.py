"""RegistryClient against the real CNCF Distribution registry, with images pushed by skopeo.

Expected digests are computed from the bytes the test built, never read back from the registry.
"""

from __future__ import annotations

import hashlib
import pathlib

import pytest

from conveyor.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    BasicCredentials,
    RegistryClient,
    RegistryError,
    Secret,
)
from tests.integration.registry.conftest import client_for
from tests.support.registry import (
    RegistryServer,
    build_image,
    build_index,
    running_registry,
    write_registries_file,
)

PASSWORD = "correct-horse-battery-staple"


async def test_resolves_the_digest_of_a_pushed_manifest(registry: RegistryServer, tmp_path: pathlib.Path) -> None:
    image = build_image(tmp_path / "image", "v1")
    assert image.digest == "sha256:" + hashlib.sha256(image.manifest_bytes).hexdigest()
    await registry.push(image, "team/app")
    async with client_for(registry) as client:
        info = await client.manifest_info(registry.host, "team/app", "v1")
        assert info.digest == image.digest
        assert info.media_type == OCI_MANIFEST
        assert info.size == len(image.manifest_bytes)
        assert not info.is_index
        assert await client.resolve_digest(registry.host, "team/app", "v1") == image.digest
        # By digest too (what a pinned deploy references).
        assert await client.resolve_digest(registry.host, "team/app", image.digest) == image.digest


async def test_resolves_a_multi_arch_index_and_its_platform_manifests(
    registry: RegistryServer, tmp_path: pathlib.Path
) -> None:
    index = build_index(tmp_path / "index", "2.0", architectures=("amd64", "arm64"))
    await registry.push(index, "team/multi")
    async with client_for(registry) as client:
        info = await client.manifest_info(registry.host, "team/multi", "2.0")
        assert info.digest == index.digest == "sha256:" + hashlib.sha256(index.manifest_bytes).hexdigest()
        assert info.media_type == OCI_INDEX
        assert info.is_index
        for child in index.children:
            child_info = await client.manifest_info(registry.host, "team/multi", child.digest)
            assert (child_info.digest, child_info.media_type) == (child.digest, OCI_MANIFEST)


async def test_one_image_under_two_tags_has_one_digest(registry: RegistryServer, tmp_path: pathlib.Path) -> None:
    image = build_image(tmp_path / "image", "v1")
    other = build_image(tmp_path / "other", "v2")
    await registry.push(image, "team/app", "v1")
    await registry.push(image, "team/app", "latest")
    await registry.push(other, "team/app", "v2")
    async with client_for(registry) as client:
        v1 = await client.resolve_digest(registry.host, "team/app", "v1")
        latest = await client.resolve_digest(registry.host, "team/app", "latest")
        v2 = await client.resolve_digest(registry.host, "team/app", "v2")
    assert v1 == latest == image.digest
    assert v2 == other.digest != v1


async def test_unknown_tags_repositories_and_digests_are_not_found(
    registry: RegistryServer, tmp_path: pathlib.Path
) -> None:
    await registry.push(build_image(tmp_path / "image", "v1"), "team/app")
    async with client_for(registry) as client:
        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(registry.host, "team/app", "v9")
        assert caught.value.kind == "not_found"
        assert caught.value.message == f"tag 'v9' does not exist in {registry.host}/team/app"

        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(registry.host, "team/nothing", "v1")
        assert caught.value.kind == "not_found"
        assert caught.value.message == f"repository team/nothing does not exist on registry {registry.host}"

        missing = "sha256:" + "0" * 64
        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(registry.host, "team/app", missing)
        assert caught.value.kind == "not_found"
        assert missing in caught.value.message

        with pytest.raises(RegistryError) as caught:
            await client.list_tags(registry.host, "team/nothing")
        assert caught.value.kind == "not_found"
        assert "repository team/nothing does not exist" in caught.value.message

        assert await client.tag_exists(registry.host, "team/app", "v1") is True
        assert await client.tag_exists(registry.host, "team/app", "v9") is False
        assert await client.tag_exists(registry.host, "team/nothing", "v1") is False
        assert await client.tag_exists(registry.host, "team/app", "not a tag!") is False


async def test_lists_tags_page_by_page(registry: RegistryServer, tmp_path: pathlib.Path) -> None:
    image = build_image(tmp_path / "image", "v1")
    tags = ["v1", "v2", "v3", "latest", "stable", "1.0.0", "1.0.1"]
    for tag in tags:
        await registry.push(image, "team/app", tag)
    async with client_for(registry) as client:
        pages: list[list[str]] = []
        token = ""
        while True:
            page, token = await client.list_tags(registry.host, "team/app", page_size=3, page_token=token)
            pages.append(page)
            if not token:
                break
            assert "latest" not in token  # opaque
        everything, last_token = await client.list_tags(registry.host, "team/app")
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [tag for page in pages for tag in page] == sorted(tags)
    assert (everything, last_token) == (sorted(tags), "")


async def test_basic_auth_registry(tmp_path: pathlib.Path) -> None:
    async with running_registry(tmp_path / "registry", htpasswd={"ci": PASSWORD}) as registry:
        image = build_image(tmp_path / "image", "v1")
        await registry.push(image, "team/app", creds=("ci", PASSWORD))
        right = BasicCredentials("ci", Secret("environment variable REGISTRY_PASSWORD", PASSWORD))
        async with client_for(registry, right) as client:
            assert await client.list_tags(registry.host, "team/app") == (["v1"], "")
            assert await client.resolve_digest(registry.host, "team/app", "v1") == image.digest

        wrong = BasicCredentials("ci", Secret("environment variable REGISTRY_PASSWORD", "not-" + PASSWORD))
        async with client_for(registry, wrong) as client:
            with pytest.raises(RegistryError) as caught:
                await client.list_tags(registry.host, "team/app")
        failure = caught.value
        assert failure.kind == "unauthorized"
        assert failure.registry == registry.host
        assert f"registry {registry.host} rejected the credentials" in failure.message
        assert "user 'ci'" in failure.message and "REGISTRY_PASSWORD" in failure.message
        assert PASSWORD not in failure.message and PASSWORD not in repr(failure)

        async with client_for(registry) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(registry.host, "team/app", "v1")
        assert caught.value.kind == "unauthorized"
        assert "none are configured" in caught.value.message


async def test_credentials_from_a_registries_file(tmp_path: pathlib.Path) -> None:
    async with running_registry(tmp_path / "registry", htpasswd={"ci": PASSWORD}) as registry:
        image = build_image(tmp_path / "image", "v1")
        await registry.push(image, "team/app", creds=("ci", PASSWORD))
        registries = write_registries_file(tmp_path / "registries.yaml", registry, username="ci", password=PASSWORD)
        async with RegistryClient.from_env({"CONVEYOR_REGISTRIES_FILE": str(registries)}) as client:
            assert await client.resolve_digest(registry.host, "team/app", "v1") == image.digest
        env = {
            "CONVEYOR_REGISTRY_LOCAL_HOST": registry.host,
            "CONVEYOR_REGISTRY_LOCAL_SCHEME": "http",
            "CONVEYOR_REGISTRY_LOCAL_USERNAME": "ci",
            "CONVEYOR_REGISTRY_LOCAL_PASSWORD": PASSWORD,
        }
        async with RegistryClient.from_env(env) as client:
            assert await client.list_tags(registry.host, "team/app") == (["v1"], "")


async def test_token_auth_registry(tmp_path: pathlib.Path) -> None:
    users = {"ci": PASSWORD, "viewer": "viewer-password"}
    async with running_registry(
        tmp_path / "registry", token_users=users, token_grants={"viewer": ["public/"]}
    ) as registry:
        assert registry.token is not None
        image = build_image(tmp_path / "image", "v1")
        await registry.push(image, "team/app", creds=("ci", PASSWORD))
        await registry.push(image, "team/app", "v2", creds=("ci", PASSWORD))
        pushes = len(registry.token.requests)

        right = BasicCredentials("ci", Secret("file /run/secrets/registry", PASSWORD))
        async with client_for(registry, right) as client:
            assert await client.list_tags(registry.host, "team/app") == (["v1", "v2"], "")
            assert await client.resolve_digest(registry.host, "team/app", "v1") == image.digest
            assert await client.resolve_digest(registry.host, "team/app", "v2") == image.digest
        issued = registry.token.requests[pushes:]
        # One token for the scope, fetched after the registry's challenge and reused afterwards.
        assert issued == [{"account": "ci", "scopes": ["repository:team/app:pull"], "status": 200}]

        wrong = BasicCredentials("ci", Secret("file /run/secrets/registry", "wrong-" + PASSWORD))
        async with client_for(registry, wrong) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(registry.host, "team/app", "v1")
        assert caught.value.kind == "unauthorized"
        assert f"the token service {registry.token.realm.removesuffix('/token')}" in caught.value.message
        assert f"registry {registry.host} rejected" in caught.value.message
        assert PASSWORD not in caught.value.message

        viewer = BasicCredentials("viewer", Secret("environment variable VIEWER_PASSWORD", "viewer-password"))
        async with client_for(registry, viewer) as client:
            with pytest.raises(RegistryError) as caught:
                await client.resolve_digest(registry.host, "team/app", "v1")
        assert caught.value.kind == "forbidden"
        assert "user 'viewer'" in caught.value.message and "team/app" in caught.value.message

        async with client_for(registry) as client:
            with pytest.raises(RegistryError) as caught:
                await client.list_tags(registry.host, "team/app")
        assert caught.value.kind == "unauthorized"
        assert "requires credentials" in caught.value.message


async def test_a_stopped_registry_is_unreachable(registry: RegistryServer, tmp_path: pathlib.Path) -> None:
    await registry.push(build_image(tmp_path / "image", "v1"), "team/app")
    async with client_for(registry, retries=2) as client:
        assert await client.tag_exists(registry.host, "team/app", "v1")
        registry.kill()
        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(registry.host, "team/app", "v1")
        assert caught.value.kind == "unreachable"
        assert registry.host in caught.value.message
        assert "3 attempt(s)" in caught.value.message
        with pytest.raises(RegistryError):
            await client.tag_exists(registry.host, "team/app", "v1")  # unknown is not "missing"
