"""The three generated parts, written as tfx-cli 0.23.1 writes them: `extension.vsixmanifest` (PackageManifest
2.0.0), `extension.vsomanifest` and `[Content_Types].xml`. Manifest keys are processed in the manifest's order, so
elements come out in tfx's order; the XML is pretty-printed like xml2js 0.5 (two spaces, no final newline)."""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from amlops.packaging.parts import VSIX_MANIFEST, VSO_MANIFEST, Part

VSO_ASSET = "Microsoft.VisualStudio.Services.Manifest"
VSX_NS = "http://schemas.microsoft.com/developer/vsx-schema/2011"
VSX_DESIGN_NS = "http://schemas.microsoft.com/developer/vsx-schema-design/2011"
_LINKS = "Microsoft.VisualStudio.Services.Links."
# tfx's VsixManifestBuilder.CONTENT_TYPE_MAP; tfx asks `file --mime-type` about other extensions (SNIFFED holds
# its answers for the files we ship) and lists those after the mapped ones.
CONTENT_TYPES = {
    ".bat": "application/bat", ".css": "text/css", ".eot": "application/vnd.ms-fontobject", ".gif": "image/gif",
    ".hbs": "text/x-handlebars-template", ".html": "text/html", ".jpeg": "image/jpeg", ".jpg": "image/jpeg",
    ".js": "application/javascript", ".json": "application/json", ".map": "application/json",
    ".md": "text/markdown", ".pdf": "application/pdf", ".png": "image/png", ".ps1": "text/ps1",
    ".scss": "text/plain", ".svg": "image/svg+xml", ".ts": "text/plain", ".vsixlangpack": "text/xml",
    ".vsixmanifest": "text/xml", ".vsomanifest": "application/json", ".woff": "application/font-woff",
}
SNIFFED = {".whl": "application/zip", ".zip": "application/zip", ".txt": "text/plain", ".py": "text/x-script.python",
           ".xml": "text/xml", ".yml": "text/plain", ".yaml": "text/plain", ".cfg": "text/plain"}
_BEST_GUESS = {"README": "text/plain", "LICENSE": "text/plain", "AUTHORS": "text/plain"}
# Keys the vsomanifest leaves to the vsixmanifest (tfx's VsoManifestBuilder ignore list).
_VSIX_ONLY = {"branding", "categories", "content", "description", "details", "extensionid", "files", "flags",
              "galleryflags", "galleryproperties", "githubflavoredmarkdown", "icons", "id", "links", "name",
              "namespace", "public", "publisher", "releasenotes", "screenshots", "showpricingcalculator", "tags",
              "targets", "version", "vsoflags"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    children: list["Element"] = field(default_factory=list)

    def child(self, tag: str) -> "Element":
        """The first child named tag, created (appended) when missing."""
        found = next((c for c in self.children if c.tag == tag), None)
        if found is None:
            found = Element(tag)
            self.children.append(found)
        return found


# -- extension.vsixmanifest ---------------------------------------------------------------------------------------
def vsix_manifest(manifest: dict, parts: list[Part]) -> str:
    root = Element("PackageManifest", {"Version": "2.0.0", "xmlns": VSX_NS, "xmlns:d": VSX_DESIGN_NS})
    metadata = root.child("Metadata")
    metadata.child("Identity").attrs["Language"] = "en-US"
    root.children.append(Element("Dependencies", text=""))
    for key, value in manifest.items():
        handler = _METADATA.get(key.lower())
        if handler is not None and value is not None:
            handler(root, metadata, value)
    assets = root.child("Assets")
    for part in parts:
        for asset_type in part.asset_types:
            _asset(metadata, assets, part.name, asset_type, part.addressable)
    _asset(metadata, assets, VSO_MANIFEST, VSO_ASSET, True)
    return render(root)


def _identity(attribute: str) -> Callable[[Element, Element, Any], None]:
    def handle(root: Element, metadata: Element, value: Any) -> None:
        if isinstance(value, str) or attribute != "Id":
            metadata.child("Identity").attrs.setdefault(attribute, str(value))
    return handle


def _single(tag: str) -> Callable[[Element, Element, Any], None]:
    def handle(root: Element, metadata: Element, value: Any) -> None:
        element = metadata.child(tag)
        if element.text is None:
            element.text = str(value)
    return handle


def _description(root: Element, metadata: Element, value: Any) -> None:
    element = metadata.child("Description")
    element.attrs = {"xml:space": "preserve"}
    if element.text is None:
        element.text = str(value)


def _listed(tag: str, separator: str) -> Callable[[Element, Element, Any], None]:
    def handle(root: Element, metadata: Element, value: Any) -> None:
        element = metadata.child(tag)
        items = [i for i in (element.text or "").split(separator) if i]
        new = value.split(separator) if isinstance(value, str) else [str(v) for v in value]
        element.text = separator.join(dict.fromkeys(items + [i for i in new if i]))
    return handle


def _public(root: Element, metadata: Element, value: Any) -> None:
    element = metadata.child("GalleryFlags")
    flags = [flag for flag in (element.text or "").split(" ") if flag]
    if value is True:
        flags.append("Public")
    elif value is False:
        flags = [flag for flag in flags if flag != "Public"]
    element.text = " ".join(dict.fromkeys(flags))


def _targets(root: Element, metadata: Element, value: Any) -> None:
    installation = root.child("Installation")
    for target in value if isinstance(value, list) else []:
        if isinstance(target, dict) and target.get("id"):
            attrs = {"Id": target["id"], **({"Version": target["version"]} if target.get("version") else {})}
            installation.children.append(Element("InstallationTarget", attrs))


def _links(root: Element, metadata: Element, value: Any) -> None:
    for kind, link in (value.items() if isinstance(value, dict) else []):
        url = (link.get("uri") or link.get("url")) if isinstance(link, dict) else None
        if url:
            _property(metadata, _LINKS + re.sub(r"[^A-Za-z0-9]", "", kind).lower().capitalize(), url)


def _repository(root: Element, metadata: Element, value: Any) -> None:
    if isinstance(value, dict) and (value.get("url") or value.get("uri")):
        _property(metadata, _LINKS + "GitHub", value.get("url") or value.get("uri"))


def _markdown(root: Element, metadata: Element, value: Any) -> None:
    _property(metadata, "Microsoft.VisualStudio.Services.GitHubFlavoredMarkdown", "true" if value else "false")


_METADATA: dict[str, Callable[[Element, Element, Any], None]] = {
    "id": _identity("Id"), "extensionid": _identity("Id"), "namespace": _identity("Id"),
    "version": _identity("Version"), "publisher": _identity("Publisher"), "name": _single("DisplayName"),
    "description": _description, "releasenotes": _single("ReleaseNotes"), "public": _public,
    "galleryflags": _listed("GalleryFlags", " "), "categories": _listed("Categories", ","),
    "tags": _listed("Tags", ","), "targets": _targets, "links": _links, "repository": _repository,
    "githubflavoredmarkdown": _markdown,
}


def _property(metadata: Element, key: str, value: str) -> None:
    metadata.child("Properties").children.append(Element("Property", {"Id": key, "Value": str(value)}))


def _asset(metadata: Element, assets: Element, path: str, asset_type: str, addressable: bool) -> None:
    attrs = {"Type": asset_type, "d:Source": "File", "Path": path}
    if addressable:
        attrs["Addressable"] = "true"
    assets.children.append(Element("Asset", attrs))
    if asset_type == "Microsoft.VisualStudio.Services.Icons.Default":
        metadata.child("Icon").text = path
    if asset_type == "Microsoft.VisualStudio.Services.Content.License":
        metadata.child("License").text = path


# -- extension.vsomanifest ---------------------------------------------------------------------------------------
def vso_manifest(manifest: dict) -> str:
    data: dict[str, Any] = {}
    for key, value in manifest.items():
        lower = key.lower()
        if value is None or lower in _VSIX_ONLY or key.startswith("__"):
            continue
        if lower in ("contributions", "contributiontypes", "constraints", "scopes"):
            name = {"contributiontypes": "contributionTypes"}.get(lower, lower)
            merged = data.get(name, []) + list(value if isinstance(value, list) else [])
            data[name] = _unique(merged) if lower == "scopes" else merged
        elif lower == "manifestversion":
            data.setdefault("manifestVersion", _number(value))
        else:
            data.setdefault({"baseuri": "baseUri", "restrictedto": "restrictedTo",
                             "eventcallbacks": "eventCallbacks"}.get(lower, key), value)
    for name in ("contributions", "scopes", "contributionTypes"):
        data.setdefault(name, [])
    if not data.get("manifestVersion"):
        data["manifestVersion"] = 1
    return json.dumps(data, indent=4, ensure_ascii=False)


def _number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _unique(items: list) -> list:
    out: list = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


# -- [Content_Types].xml -----------------------------------------------------------------------------------------
def content_type_of(name: str) -> str:
    extension = posixpath.splitext(name)[1].lower()
    return CONTENT_TYPES.get(extension) or SNIFFED.get(extension) or "application/octet-stream"


def content_types(parts: list[Part]) -> str:
    """A Default per file extension (tfx's leading-dot form), an Override per file without one or with a declared
    content type; then Defaults for the two manifests' extensions."""
    defaults: dict[str, str] = {}
    overrides: dict[str, str] = {}
    for part in parts:
        base = posixpath.basename(part.name)
        extension = posixpath.splitext(base)[1].lower()
        if part.content_type:
            overrides.setdefault("/" + part.name, part.content_type)
        elif extension:
            defaults.setdefault(extension, content_type_of(base))
        else:
            guess = _BEST_GUESS.get(base.upper()) or ("text/plain" if base.startswith(".") else None)
            overrides.setdefault("/" + part.name, guess or "application/octet-stream")
    defaults = {ext: kind for ext, kind in sorted(defaults.items(), key=lambda item: item[0] not in CONTENT_TYPES)}
    for name in (VSIX_MANIFEST, VSO_MANIFEST):
        defaults.setdefault(posixpath.splitext(name)[1], content_type_of(name))
    root = Element("Types", {"xmlns": "http://schemas.openxmlformats.org/package/2006/content-types"})
    root.children += [Element("Default", {"Extension": ext, "ContentType": kind}) for ext, kind in defaults.items()]
    root.children += [Element("Override", {"ContentType": kind, "PartName": name}) for name, kind in overrides.items()]
    return render(root)


# -- XML as xml2js 0.5 / xmlbuilder 11 writes it ----------------------------------------------------------------
def render(root: Element) -> str:
    return "\n".join(['<?xml version="1.0" encoding="utf-8"?>', *_lines(root, 0)])


def _lines(element: Element, depth: int) -> list[str]:
    pad = "  " * depth
    attrs = "".join(f' {name}="{_escape_attr(value)}"' for name, value in element.attrs.items())
    if element.children:
        inner = [line for child in element.children for line in _lines(child, depth + 1)]
        return [f"{pad}<{element.tag}{attrs}>", *inner, f"{pad}</{element.tag}>"]
    if element.text:
        return [f"{pad}<{element.tag}{attrs}>{_escape_text(element.text)}</{element.tag}>"]
    return [f"{pad}<{element.tag}{attrs}/>"]


def _escape_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#xD;")


def _escape_attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;").replace("\t", "&#x9;")
            .replace("\n", "&#xA;").replace("\r", "&#xD;"))
