"""The demo images `make run` seeds its registry with, and the registry's config and storage helpers."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pathlib
import shlex
import tarfile

import yaml

from conveyor_sandbox import images, registry


def blob(layout: pathlib.Path, digest: str) -> bytes:
    return (layout / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes()


def test_demo_layout_is_deterministic_and_names_every_tag(tmp_path: pathlib.Path) -> None:
    first = images.build_demo_layout(tmp_path / "a")
    assert images.build_demo_layout(tmp_path / "b") == first
    assert images.build_demo_layout(tmp_path / "a") == first  # rebuilt in place: same content
    assert list(first) == list(images.DEMO_TAGS) and len(set(first.values())) == len(first)

    index = json.loads((tmp_path / "a" / "index.json").read_text())
    refs = {m["annotations"][images.REF_NAME]: m["digest"] for m in index["manifests"]}
    assert refs == first
    assert json.loads((tmp_path / "a" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_demo_images_are_valid_single_layer_images(tmp_path: pathlib.Path) -> None:
    layout = tmp_path / "layout"
    digests = images.build_demo_layout(layout)
    for tag, digest in digests.items():
        manifest_bytes = blob(layout, digest)
        assert "sha256:" + hashlib.sha256(manifest_bytes).hexdigest() == digest
        manifest = json.loads(manifest_bytes)
        assert manifest["mediaType"] == images.OCI_MANIFEST
        (layer,) = manifest["layers"]
        # gzip already: skopeo would compress a plain tar on push and change the digests.
        assert layer["mediaType"] == images.OCI_LAYER_GZIP
        tar = gzip.decompress(blob(layout, layer["digest"]))
        with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
            member = archive.extractfile("srv/demo-web/VERSION")
            assert member is not None and member.read() == f"demo/web {tag}\n".encode()
        config = json.loads(blob(layout, manifest["config"]["digest"]))
        assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar).hexdigest()]
        assert config["config"]["Labels"]["org.opencontainers.image.version"] == tag


def test_push_command_is_the_line_a_person_types() -> None:
    line = images.push_command("data/my images", "v1.2.0", "127.0.0.1:5000", "demo/web", "v1.3.0")
    assert shlex.split(line) == [
        "skopeo",
        "copy",
        "--dest-tls-verify=false",
        "oci:data/my images:v1.2.0",
        "docker://127.0.0.1:5000/demo/web:v1.3.0",
    ]


def test_stored_tags_reads_the_registry_storage(tmp_path: pathlib.Path) -> None:
    storage = tmp_path / "storage"
    assert registry.stored_tags(storage, "demo/web") == set()
    tags = storage / "docker/registry/v2/repositories/demo/web/_manifests/tags"
    for tag in ("v1.0.0", "v1.1.0"):
        (tags / tag / "current").mkdir(parents=True)
        (tags / tag / "current" / "link").write_text("sha256:abc")
    (tags / "half-written" / "current").mkdir(parents=True)  # no link: not a tag yet
    assert registry.stored_tags(storage, "demo/web") == {"v1.0.0", "v1.1.0"}
    assert registry.stored_tags(storage, "demo/other") == set()


def test_registry_config_is_plain_http_on_loopback_with_notifications(tmp_path: pathlib.Path) -> None:
    endpoint = registry.NotificationEndpoint(
        "http://127.0.0.1:8080/webhooks/distribution", headers={"Authorization": "Bearer s3cret"}
    )
    config = registry.registry_config(
        address="127.0.0.1:5000", storage=tmp_path / "s", secret="x" * 32, notifications=[endpoint]
    )
    path = registry.write_config(tmp_path / "registry" / "config.yml", config)
    assert path.stat().st_mode & 0o077 == 0  # it holds the webhook token
    loaded = yaml.safe_load(path.read_text())
    assert loaded["http"] == {"addr": "127.0.0.1:5000", "secret": "x" * 32}
    assert loaded["storage"]["filesystem"] == {"rootdirectory": str(tmp_path / "s")}
    assert loaded["notifications"]["endpoints"] == [endpoint.to_config()]
    assert endpoint.to_config()["headers"] == {"Authorization": ["Bearer s3cret"]}
    assert "notifications" not in registry.registry_config(address="127.0.0.1:1", storage=tmp_path, secret="y")
