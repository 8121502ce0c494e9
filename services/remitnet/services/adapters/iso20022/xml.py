"""Reading ISO 20022 documents safely, and checking them against their
official schemas (xsd/, vendored unmodified: xsd/README.md).

The parser is hardened for documents from outside: no DTD is loaded, no
entity is resolved, nothing is fetched (no_network), the tree is bounded
(lxml's default limits, without huge_tree), and a document that declares a
DTD or an entity is refused before it is parsed, so neither an XML bomb nor
an external entity can cost anything. Every refusal is INVALID_ARGUMENT
with a reason (errors.proto) and says where."""

from __future__ import annotations

import re
import threading
from functools import cache
from pathlib import Path
from typing import Final

from lxml import etree

from remitnet.services.domain.errors import InvalidArgument, Reason

XSD_DIR: Final = Path(__file__).resolve().parent / "xsd"
NAMESPACE_PREFIX: Final = "urn:iso:std:iso:20022:tech:xsd:"
# Documents larger than this are refused unread: the answer to the largest
# legal one still fits the 4 MiB gRPC message limit (iso20022.proto).
MAX_DOCUMENT_BYTES: Final = 3 * 1024 * 1024
# Deeper than any ISO 20022 message nests (pacs.008 reaches about 12).
MAX_DEPTH: Final = 40
# What ErrorInfo metadata values may hold (errors.proto).
_METADATA_CHARS: Final = 64

# Markup that only a DTD brings: refused before parsing, wherever it is.
_FORBIDDEN: Final = ((b"<!DOCTYPE", "DOCTYPE"), (b"<!ENTITY", "ENTITY"))
_STEP = re.compile(r"\*(?:\[(\d+)\])?")

_local = threading.local()


def _parser() -> etree.XMLParser:
    """One parser per thread (lxml parsers are not to be shared across
    threads), configured once."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
            collect_ids=False,
        )
        _local.parser = parser
    return parser


def namespace(kind: str) -> str:
    return NAMESPACE_PREFIX + kind


@cache
def schema(kind: str) -> etree.XMLSchema:
    """The official XSD of message definition `kind` (e.g. pacs.008.001.08),
    compiled once; read with the same hardened parser as documents."""
    path = XSD_DIR / f"{kind}.xsd"
    return etree.XMLSchema(etree.parse(str(path), _parser()))


def _tail(text: str) -> str:
    return text if len(text) <= _METADATA_CHARS else "…" + text[-(_METADATA_CHARS - 1) :]


def readable_path(tree: etree._ElementTree, path: str) -> str:
    """lxml's error path (/*/*/*[2]/*) with local names and 1-based
    positions among same-named siblings: /Document/FIToFICstmrCdtTrf/
    CdtTrfTxInf[2]/PmtId."""
    node = tree.getroot()
    steps = [s for s in path.split("/") if s]
    if not steps or node is None:
        return path
    out = [etree.QName(node).localname]
    for step in steps[1:]:
        match = _STEP.fullmatch(step)
        children = [c for c in node if isinstance(c.tag, str)]
        if match is None or not children:
            return path
        index = int(match.group(1) or 1) - 1
        if index >= len(children):
            return path
        node = children[index]
        name = etree.QName(node).localname
        same = [c for c in children if etree.QName(c).localname == name]
        out.append(f"{name}[{same.index(node) + 1}]" if len(same) > 1 else name)
    return "/" + "/".join(out)


def _rule(type_name: str) -> str:
    """SCHEMAV_CVC_PATTERN_VALID -> pattern; SCHEMAV_ELEMENT_CONTENT -> content."""
    name = type_name.removeprefix("SCHEMAV_").removeprefix("CVC_").lower()
    name = name.removesuffix("_valid")
    return {"element_content": "content", "complex_type_2_4": "content"}.get(name, name)


def _depth_ok(root: etree._Element) -> bool:
    depth, stack = 0, [(root, 1)]
    while stack:
        node, level = stack.pop()
        depth = max(depth, level)
        if depth > MAX_DEPTH:
            return False
        stack.extend((c, level + 1) for c in node if isinstance(c.tag, str))
    return True


def parse(data: bytes, kind: str) -> etree._Element:
    """The root of `data`, a document of message definition `kind` that its
    official schema accepts; else InvalidArgument (DOCUMENT_TOO_LARGE,
    FORBIDDEN_XML, MALFORMED_XML, UNSUPPORTED_MESSAGE, SCHEMA_VIOLATION)."""
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidArgument(
            Reason.DOCUMENT_TOO_LARGE,
            f"the document has {len(data)} bytes; at most {MAX_DOCUMENT_BYTES} are taken",
            limit=str(MAX_DOCUMENT_BYTES),
        )
    for marker, construct in _FORBIDDEN:
        if marker in data:
            raise InvalidArgument(
                Reason.FORBIDDEN_XML,
                f"the document holds a {construct} declaration: DTDs and entities are refused",
                construct=construct,
            )
    if b"\x00" in data or data.startswith((b"\xff\xfe", b"\xfe\xff")):
        # UTF-16 or UTF-32 would hide the markers above from the byte scan.
        raise InvalidArgument(
            Reason.FORBIDDEN_XML, "ISO 20022 documents are UTF-8", construct="encoding"
        )
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as err:
        line = err.lineno or 0
        raise InvalidArgument(
            Reason.MALFORMED_XML, f"not well-formed XML: {err.msg}", line=str(line)
        ) from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise InvalidArgument(
            Reason.FORBIDDEN_XML, "DTDs are refused", construct="DOCTYPE"
        )  # pragma: no cover - the byte scan refuses them first
    encoding = (tree.docinfo.encoding or "UTF-8").upper()
    if encoding not in ("UTF-8", "UTF8"):
        raise InvalidArgument(
            Reason.FORBIDDEN_XML,
            f"ISO 20022 documents are UTF-8, this one declares {encoding[:20]}",
            construct="encoding",
        )
    expected = namespace(kind)
    qname = etree.QName(root)
    if qname.namespace != expected or qname.localname != "Document":
        found = qname.namespace or ""
        raise InvalidArgument(
            Reason.UNSUPPORTED_MESSAGE,
            f"expected a {kind} Document ({expected}), got {qname.localname} in {found[:80]!r}",
            namespace=_tail(found),
            expected=expected,
        )
    if not _depth_ok(root):
        raise InvalidArgument(
            Reason.DOCUMENT_TOO_LARGE,
            f"the document nests deeper than {MAX_DEPTH} elements",
            limit=str(MAX_DEPTH),
        )
    check(tree, kind)
    return root


def check(tree: etree._ElementTree, kind: str) -> None:
    """`tree` is valid against the official XSD of `kind`, or
    InvalidArgument SCHEMA_VIOLATION naming the element, the rule and the
    line of the first error. (The tests check every outbound document.)"""
    xsd = schema(kind)
    if xsd.validate(tree):
        return
    error = xsd.error_log[0]
    path = readable_path(tree, error.path or "")
    rule = _rule(error.type_name)
    message = error.message.replace("{" + namespace(kind) + "}", "")
    raise InvalidArgument(
        Reason.SCHEMA_VIOLATION,
        f"{path}: {message} (schema rule {rule}, line {error.line})",
        path=_tail(path),
        rule=_tail(rule),
        line=str(error.line),
    )


def text_at(node: etree._Element | None, path: str, namespaces: dict[str, str]) -> str:
    """The text of the element at `path` below `node`; "" where either is
    absent (the schema said what must be there)."""
    if node is None:
        return ""
    found = node.find(path, namespaces)
    return (found.text or "") if found is not None else ""


def document(namespace: str) -> etree._Element:
    """An outbound message's root, `Document` in `namespace` (the default
    namespace, as the schemas' own examples write it)."""
    return etree.Element(f"{{{namespace}}}Document", nsmap={None: namespace})


def add(
    parent: etree._Element, namespace: str, name: str, text: str | None = None
) -> etree._Element:
    """A child element `name` of `parent` in `namespace`, with `text`."""
    node = etree.SubElement(parent, f"{{{namespace}}}{name}")
    if text is not None:
        node.text = text
    return node
