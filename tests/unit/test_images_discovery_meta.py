"""appc meta discovery without a network: names and labels, meta tags, templates."""

from __future__ import annotations

import json
import re

import pytest

from pyrkt.appc.image import load_image_manifest
from pyrkt.errors import RktError, UsageError
from pyrkt.image.discovery import (
    ACI_TAG,
    PUBKEYS_TAG,
    App,
    Endpoint,
    MetaTag,
    check_manifest,
    endpoints,
    fill_template,
    parse_app,
    parse_meta,
    pick,
)

PAGE = """<!DOCTYPE html><html><head>
<meta charset="utf-8">
<meta name="ac-discovery" content="example.com https://cdn.example.com/{name}-{version}-{os}-{arch}.{ext}">
<meta name="ac-discovery" content="example.com/app https://app.example.com/{os}/{arch}/app-{version}.{ext}">
<META NAME="ac-discovery-pubkeys" CONTENT="example.com https://example.com/pubkeys.gpg">
<meta name="ac-discovery" content="only-one-field">
<meta name="description" content="example.com not-a-discovery-tag">
</head><body>hello</body></html>"""


def test_parse_app_fills_default_labels() -> None:
    app = parse_app("example.com/app")
    assert app == App("example.com/app", {"os": "linux", "arch": "amd64"})
    assert str(app) == "example.com/app"


def test_parse_app_takes_version_and_labels() -> None:
    app = parse_app("example.com/app:v1.0,arch=arm64,channel=beta")
    assert dict(app.labels) == {"version": "v1.0", "os": "linux", "arch": "arm64",
                                "channel": "beta"}  # fmt: skip


@pytest.mark.parametrize("bad", ["Example.com/app", "example.com/app:1,arch", "/app", ""])
def test_parse_app_refuses_bad_names_and_labels(bad: str) -> None:
    with pytest.raises(UsageError):
        parse_app(bad)


def test_parse_meta_reads_both_kinds_and_skips_malformed_tags() -> None:
    assert parse_meta(PAGE) == [
        MetaTag(ACI_TAG, "example.com",
                "https://cdn.example.com/{name}-{version}-{os}-{arch}.{ext}"),
        MetaTag(ACI_TAG, "example.com/app",
                "https://app.example.com/{os}/{arch}/app-{version}.{ext}"),
        MetaTag(PUBKEYS_TAG, "example.com", "https://example.com/pubkeys.gpg"),
    ]  # fmt: skip


def test_fill_template_needs_every_placeholder() -> None:
    values = {"name": "a.com/b", "version": "1", "ext": "aci"}
    assert fill_template("https://{name}/{version}.{ext}", values) == "https://a.com/b/1.aci"
    assert fill_template("https://{name}/{os}.{ext}", values) is None


def test_longest_prefix_wins_and_signature_is_aci_asc() -> None:
    tags = parse_meta(PAGE)
    assert endpoints(tags, parse_app("example.com/app:2.0")) == [
        Endpoint("https://app.example.com/linux/amd64/app-2.0.aci",
                 "https://app.example.com/linux/amd64/app-2.0.aci.asc"),
        Endpoint("https://cdn.example.com/example.com/app-2.0-linux-amd64.aci",
                 "https://cdn.example.com/example.com/app-2.0-linux-amd64.aci.asc"),
    ]  # fmt: skip


def test_prefix_matches_whole_path_components_only() -> None:
    tags = parse_meta(PAGE)
    # "example.com/app" is not a prefix of "example.com/application"
    found = endpoints(tags, parse_app("example.com/application:1"))
    assert [e.aci for e in found] == [
        "https://cdn.example.com/example.com/application-1-linux-amd64.aci"
    ]
    assert endpoints(tags, parse_app("other.org/app:1")) == []
    assert [t.template for t in pick(tags, PUBKEYS_TAG, "example.com/app")] == [
        "https://example.com/pubkeys.gpg"
    ]


def test_template_with_unknown_placeholder_is_skipped() -> None:
    tags = [MetaTag(ACI_TAG, "a.com", "https://a.com/{name}-{channel}.{ext}")]
    assert endpoints(tags, parse_app("a.com/x:1")) == []
    assert endpoints(tags, parse_app("a.com/x:1,channel=beta"))[0].aci == (
        "https://a.com/a.com/x-beta.aci"
    )


def test_most_labels_filled_wins_and_latest_pattern_fits_no_version() -> None:
    tags = [
        MetaTag(ACI_TAG, "a.com", "hdfs://s.a.com/{os}/{arch}/{name}-{version}.{ext}"),
        MetaTag(ACI_TAG, "a.com", "https://s.a.com/{os}/{arch}/{name}-latest.{ext}"),
        MetaTag(ACI_TAG, "a.com/x", "https://m.a.com/{name}.{ext}"),
        MetaTag(ACI_TAG, "a.com", "https://s.a.com/{os}/{arch}/{name}-{version}.{ext}"),
    ]
    assert [e.aci for e in endpoints(tags, parse_app("a.com/x:3"))] == [
        "https://s.a.com/linux/amd64/a.com/x-3.aci",
        "https://s.a.com/linux/amd64/a.com/x-latest.aci",
        "https://m.a.com/a.com/x.aci",
    ]
    assert endpoints(tags, parse_app("a.com/x"))[0].aci == (
        "https://s.a.com/linux/amd64/a.com/x-latest.aci"
    )


def _manifest(name: str, **labels: str) -> bytes:
    return json.dumps({
        "acKind": "ImageManifest", "acVersion": "0.8.11", "name": name,
        "labels": [{"name": k, "value": v} for k, v in labels.items()],
    }).encode()  # fmt: skip


def test_check_manifest_wants_the_apps_name_and_labels() -> None:
    app = parse_app("a.com/x:1.0")
    check_manifest(app, load_image_manifest(_manifest("a.com/x", version="1.0", os="linux")))
    with pytest.raises(RktError, match=re.escape("named 'a.com/y', not 'a.com/x'")):
        check_manifest(app, load_image_manifest(_manifest("a.com/y", version="1.0")))
    with pytest.raises(RktError, match=re.escape("version='2.0', not '1.0'")):
        check_manifest(app, load_image_manifest(_manifest("a.com/x", version="2.0")))
    with pytest.raises(RktError, match="version=None"):
        check_manifest(app, load_image_manifest(_manifest("a.com/x")))
    with pytest.raises(RktError, match=re.escape("arch='arm64', not 'amd64'")):
        check_manifest(app, load_image_manifest(_manifest("a.com/x", version="1.0",
                                                          arch="arm64")))  # fmt: skip
