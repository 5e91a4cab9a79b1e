"""appc meta discovery: from an app name (and labels) to the URLs of its ACI, signature
and public keys, as the appc spec's `discovery.md` says.

    app = parse_app("example.com/app:v1.0,os=linux")   # labels: version, os, arch
    found = discover_aci(g, app)          # GET https://example.com/app?ac-discovery=1, ...
    found.aci, found.signature            # the templates of the longest matching prefix
    discover_pubkeys(g, "example.com/app")   # the `ac-discovery-pubkeys` URLs

The discovery page is fetched from `https://NAME?ac-discovery=1`; when that fails (no
answer, a status other than 200, or no tag for this kind) the next path up is tried
(`example.com/app/x` -> `example.com/app` -> `example.com`). Plain http is tried after
https only with `--insecure-options=http`. A template whose `{placeholders}` cannot all
be filled from the labels is skipped; of the others, those filling the most labels win,
then the longest prefix. Without a version the app has no `version` label, so only
templates without `{version}` fit (the spec's "latest pattern"). The image fetched must
carry the app's name and labels (`check_manifest`). The pure parts (`parse_app`,
`parse_meta`, `fill_template`, `pick`, `endpoints`, `check_manifest`) need no network.
"""

from __future__ import annotations

import html.parser
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from pyrkt import log
from pyrkt.appc.image import ImageManifest, is_ac_identifier
from pyrkt.errors import NotFound, RktError, UsageError
from pyrkt.options import GlobalOptions, Insecure

ACI_TAG = "ac-discovery"
PUBKEYS_TAG = "ac-discovery-pubkeys"
DEFAULT_LABELS = {"os": "linux", "arch": "amd64"}
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_MAX_PAGE = 1 << 20  # bytes of a discovery page read


@dataclass(frozen=True)
class App:
    """An app name with its labels (`version`, `os`, `arch`, ...)."""

    name: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        version = self.labels.get("version")
        return f"{self.name}:{version}" if version else self.name


@dataclass(frozen=True)
class MetaTag:
    """One `<meta name=KIND content="PREFIX TEMPLATE">` of a discovery page."""

    kind: str
    prefix: str
    template: str


@dataclass(frozen=True)
class Endpoint:
    """Where an app's ACI and its detached signature are."""

    aci: str
    signature: str


def parse_app(ref: str) -> App:
    """`NAME[:VERSION][,LABEL=VALUE...]` with os/arch/version defaults filled in."""
    head, *pairs = ref.split(",")
    name, _, version = head.partition(":")
    if not is_ac_identifier(name):
        raise UsageError(f"invalid image name {name!r}: not an AC identifier")
    labels = dict(DEFAULT_LABELS)
    if version:
        labels["version"] = version
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key or not value:
            raise UsageError(f"invalid label {pair!r} in {ref!r}: want NAME=VALUE")
        labels[key] = value
    return App(name, labels)


class _MetaParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[MetaTag] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            return
        a = {k: v or "" for k, v in attrs}
        kind = a.get("name", "")
        if kind not in (ACI_TAG, PUBKEYS_TAG):
            return
        parts = a.get("content", "").split()
        if len(parts) == 2:
            self.tags.append(MetaTag(kind, parts[0], parts[1]))
        else:
            log.debug(f"ignoring {kind} meta tag with content {a.get('content')!r}")


def parse_meta(page: str) -> list[MetaTag]:
    """The `ac-discovery` and `ac-discovery-pubkeys` tags of a page, in order."""
    parser = _MetaParser()
    parser.feed(page)
    parser.close()
    return parser.tags


def fill_template(template: str, values: Mapping[str, str]) -> str | None:
    """`template` with each `{key}` replaced; None if a key has no value."""
    return _fill(template, values)[0]


def _fill(template: str, values: Mapping[str, str]) -> tuple[str | None, int]:
    """`fill_template`, and how many labels (not `name`, `ext`) it substituted."""
    used = {m.group(1) for m in _PLACEHOLDER.finditer(template)} - {"name", "ext"}
    missing = False

    def sub(m: re.Match[str]) -> str:
        nonlocal missing
        value = values.get(m.group(1))
        if value is None:
            missing = True
            return ""
        return value

    out = _PLACEHOLDER.sub(sub, template)
    return (None if missing else out), len(used)


def _prefix_matches(prefix: str, name: str) -> bool:
    return name == prefix or name.startswith(prefix.rstrip("/") + "/") or (
        prefix.endswith("/") and name.startswith(prefix)
    )  # fmt: skip


def pick(tags: list[MetaTag], kind: str, name: str) -> list[MetaTag]:
    """The `kind` tags whose prefix matches `name`, longest prefix first."""
    found = [t for t in tags if t.kind == kind and _prefix_matches(t.prefix, name)]
    return sorted(found, key=lambda t: len(t.prefix), reverse=True)


def endpoints(tags: list[MetaTag], app: App) -> list[Endpoint]:
    """The ACI endpoints for `app` out of a page's tags, best first: templates fully
    filled only, the most labels filled first, then the longest prefix."""
    ranked: list[tuple[int, Endpoint]] = []
    values = {**app.labels, "name": app.name}
    for tag in pick(tags, ACI_TAG, app.name):
        aci, used = _fill(tag.template, {**values, "ext": "aci"})
        sig = fill_template(tag.template, {**values, "ext": "aci.asc"})
        if not tag.template.startswith(("https://", "http://")):
            log.debug(f"{tag.template}: only http(s) templates are fetched")
        elif aci is not None and sig is not None:
            ranked.append((used, Endpoint(aci, sig)))
        else:
            log.debug(f"{tag.template}: placeholders not filled by {dict(app.labels)}")
    ranked.sort(key=lambda r: r[0], reverse=True)  # stable: longest prefix first stays
    return [e for _, e in ranked]


def check_manifest(app: App, manifest: ImageManifest) -> None:
    """Refuse an image whose name or labels are not the app's (appc: "Validation").

    The default `os`/`arch` may be missing from the manifest; any other label of the app
    must be there with the same value."""
    if manifest.name != app.name:
        raise RktError(f"discovered image is named {manifest.name!r}, not {app.name!r}")
    for key, want in app.labels.items():
        got = manifest.label(key)
        if got != want and not (got is None and DEFAULT_LABELS.get(key) == want):
            raise RktError(
                f"discovered image {app.name!r} has label {key}={got!r}, not {want!r}"
            )


def _walk(name: str) -> Iterator[str]:
    """`name`, then each path above it: `a.com/b/c`, `a.com/b`, `a.com`."""
    while name:
        yield name
        name = name.rpartition("/")[0]


def _get_page(g: GlobalOptions, url: str) -> str:
    """The page at `url`; `_NoPage` says why there is none."""
    from pyrkt.image.httpget import Client, TransportError

    client = Client(verify=not g.allows(Insecure.TLS))
    try:
        with client.get(url) as resp:
            if resp.status_code != 200:
                raise _NoPage(f"HTTP status {resp.status_code}")
            return resp.read(_MAX_PAGE).decode("utf-8", "replace")
    except TransportError as e:
        raise _NoPage(str(e).removeprefix(url).lstrip(": ") or str(e)) from e
    finally:
        client.close()


class _NoPage(Exception):
    pass


def _pages(g: GlobalOptions, name: str, tried: list[str],
           allow_http: bool = False) -> Iterator[list[MetaTag]]:  # fmt: skip
    """The tags of each discovery page found, walking up `name`; `tried` gets each URL
    (with why it gave nothing, when it did not answer)."""
    schemes = ["https", "http"] if allow_http or g.allows(Insecure.HTTP) else ["https"]
    for path in _walk(name):
        for scheme in schemes:
            url = f"{scheme}://{path}?ac-discovery=1"
            try:
                page = _get_page(g, url)
            except _NoPage as e:
                log.debug(f"discovery: {url}: {e}")
                tried.append(f"{url} ({e})")
                continue
            tried.append(url)
            yield parse_meta(page)


def _failure(what: str, tried: list[str], http_flag: str) -> NotFound:
    hint = None if any(u.startswith("http://") for u in tried) else (
        f"use {http_flag} to also try plain http")  # fmt: skip
    return NotFound(f"{what}: discovery failed; tried {', '.join(tried)}", hint)


def discover_aci(g: GlobalOptions, app: App) -> Endpoint:
    """The ACI and signature URLs of `app` (raises NotFound naming the URLs tried)."""
    tried: list[str] = []
    for tags in _pages(g, app.name, tried):
        found = endpoints(tags, app)
        if found:
            log.debug(f"discovery: {app} -> {found[0].aci}")
            return found[0]
    raise _failure(f"image {str(app)!r}", tried, "--insecure-options=http")


def discover_pubkeys(g: GlobalOptions, prefix: str, *, allow_http: bool = False) -> list[str]:
    """The public key URLs the discovery pages give for `prefix` (`rkt trust`)."""
    tried: list[str] = []
    for tags in _pages(g, prefix, tried, allow_http):
        keys = [t.template for t in pick(tags, PUBKEYS_TAG, prefix)]
        if keys:
            return keys
    raise _failure(f"public keys for {prefix!r}", tried, "--insecure-allow-http")
