"""The error contract is self-describing: every ErrorInfo reason the hub can
send is listed in protos/remitnet/common/v1/errors.proto (enum ErrorReason),
with the gRPC code it comes with and its metadata keys, and the list is the
Python set (`Reason`), no more, no less. The comments are checked against
the code too: every place that raises a reason raises it with a documented
code and documented metadata keys."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from remitnet.common.v1 import errors_pb2
from remitnet.services.domain import errors as domain_errors
from remitnet.services.domain.errors import ErrorKind, Reason, RemitnetError

ROOT = Path(__file__).resolve().parent.parent.parent
PROTO = ROOT / "protos" / "remitnet" / "common" / "v1" / "errors.proto"
GRPC_CODES = {k.value for k in ErrorKind} | {"RESOURCE_EXHAUSTED"}


def python_reasons() -> set[str]:
    return {v for k, v in vars(Reason).items() if k.isupper() and isinstance(v, str)}


def proto_reasons() -> set[str]:
    names = errors_pb2.ErrorReason.DESCRIPTOR.values_by_name
    return {n for n in names if n != "ERROR_REASON_UNSPECIFIED"}


def documented() -> dict[str, tuple[set[str], set[str]]]:
    """reason -> (gRPC codes, metadata keys), from the value comments."""
    text = PROTO.read_text()
    body = text[text.index("enum ErrorReason {") :]
    out: dict[str, tuple[set[str], set[str]]] = {}
    for match in re.finditer(r"((?:  //[^\n]*\n)+)  ([A-Z_]+) = \d+;", body):
        comment = " ".join(
            line.strip().removeprefix("//").strip() for line in match.group(1).splitlines()
        )
        head = re.match(r"([A-Z_]+(?: or [A-Z_]+)*)\. Metadata: ([^.]*)\.", comment)
        if match.group(2) == "ERROR_REASON_UNSPECIFIED":
            continue
        assert head, f"{match.group(2)}: the comment must start 'CODE. Metadata: keys.'"
        codes = set(head.group(1).split(" or "))
        keys = {re.sub(r" \(.*\)$", "", k.strip()) for k in head.group(2).split(",") if k.strip()}
        out[match.group(2)] = (codes, keys - {"none"})
    return out


def test_the_protos_list_exactly_the_python_reasons() -> None:
    python, proto = python_reasons(), proto_reasons()
    assert python - proto == set(), "add these to ErrorReason in errors.proto (make protos)"
    assert proto - python == set(), "add these to Reason in remitnet/services/domain/errors.py"


def test_every_reason_is_documented_with_a_grpc_code_and_its_metadata() -> None:
    docs = documented()
    assert set(docs) == proto_reasons()
    for reason, (codes, _) in docs.items():
        assert codes <= GRPC_CODES, (reason, codes)


def _kind_of_class() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for name, value in vars(domain_errors).items():
        if isinstance(value, type) and issubclass(value, RemitnetError):
            kinds[name] = value.kind.value
    kinds["FxConfigError"] = ErrorKind.INVALID_ARGUMENT.value
    return kinds


def test_raise_sites_match_the_documented_codes_and_metadata() -> None:
    """Every `SomeError(Reason.X, ..., key=...)` in the hub's code raises X
    with a code and keys its ErrorReason comment lists."""
    docs = documented()
    kinds = _kind_of_class()
    problems: list[str] = []
    seen = 0
    for path in sorted((ROOT / "services").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            first = node.args[0]
            if not (
                isinstance(first, ast.Attribute)
                and isinstance(first.value, ast.Name)
                and first.value.id == "Reason"
            ):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if name not in kinds:
                continue  # a metric label or a comparison, not a raise
            seen += 1
            reason = first.attr
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if reason not in docs:
                problems.append(f"{where}: {reason} is not in errors.proto")
                continue
            codes, keys = docs[reason]
            if kinds[name] not in codes:
                problems.append(f"{where}: {reason} raised as {kinds[name]}, documented {codes}")
            used = {k.arg for k in node.keywords if k.arg and k.arg != "retry_after_s"}
            if not used <= keys:
                problems.append(f"{where}: {reason} metadata {used - keys} is not documented")
    assert seen > 50
    assert not problems, "\n".join(problems)


def test_item_error_code_is_documented_as_a_google_rpc_code() -> None:
    clearing = (ROOT / "protos" / "remitnet" / "clearing" / "v1" / "clearing.proto").read_text()
    start = clearing.index("message ItemError")
    body = clearing[start : clearing.index("}", start)]
    assert "google.rpc.Code" in body.split("int32 code = 1;")[0]
