"""How hub answers read on a terminal and in scripts: the one formatting
module of the `remitnet` command and `scripts/demo.py`.

Human form (the default):

- aligned tables (`table`) and `label  value` blocks (`fields`);
- money in major units with its currency's exponent and thousands separators,
  zeros included: `money("USD", 10000000)` is `100,000.00 USD` (the exponent
  table is the domain's, `services/remitnet/services/domain/money.py`);
- timestamps in UTC, ISO 8601 to the second: `2026-12-01T21:02:57Z` (`-` when
  unset);
- enum values without their type prefix: `ACCEPTED`, not
  `TRANSFER_STATUS_ACCEPTED` (`enum_name`);
- empty text as `-`, booleans as `yes` / `no`.

JSON form (`--json`, `to_json`): the answer message in the proto3 JSON mapping
as one document with every field present: zeros, empty strings and lists,
and unset messages as `null`; field names as in the .proto files, int64
values as strings, money as minor units plus currency (a `Money` message, or
an int64 field next to the message's `currency`), enums by full name.

Adding a command that prints a new message: return the message and call
`print_message(message, json=args.json)`. Every message prints without more
work (`render` lays out any message generically: scalars as a block, nested
messages as sections, repeated messages as tables). Two things to add when
they apply:

- a message whose int64 fields are amounts declares them in `MONEY_FIELDS`,
  or they print as plain integers;
- a message that reads better another way registers a layout with
  `@renderer(pb.TheMessage)`, built from `fields`, `table`, `money`,
  `timestamp` and `enum_name`.

Errors: `error_line(err)` is the one line a refused or unanswered call
prints; `error_json(err)` its JSON document.
"""

from __future__ import annotations

import json as jsonlib
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC
from typing import IO, TYPE_CHECKING, Any, Final, Protocol, TypeAlias, TypeVar, cast

import grpc
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from remitnet.clearing.v1 import clearing_pb2 as cpb
from remitnet.clients.errors import HubError
from remitnet.common.v1 import money_pb2
from remitnet.fx.v1 import fx_pb2 as fxpb
from remitnet.netting.v1 import netting_pb2 as npb
from remitnet.participants.v1 import participants_pb2 as ppb
from remitnet.services.domain import lifecycle
from remitnet.services.domain.errors import RemitnetError
from remitnet.services.domain.money import Money
from remitnet.settlement.v1 import settlement_pb2 as spb

Renderer = Callable[[Any, str], str]
R = TypeVar("R", bound=Callable[..., str])

if TYPE_CHECKING:
    from google._upb import _message as upb

    # Descriptors are of the pure-Python or of the upb implementation.
    Field: TypeAlias = FieldDescriptor | upb.FieldDescriptor
    MessageDescriptor: TypeAlias = Descriptor | upb.Descriptor
    EnumType: TypeAlias = EnumDescriptor | upb.EnumDescriptor


class _GeneratedEnum(Protocol):
    """A generated enum type, e.g. `clearing_pb2.TransferStatus`."""

    DESCRIPTOR: EnumDescriptor


# -- values ---------------------------------------------------------------


def money(currency: str, minor_units: int) -> str:
    """`100,000.00 USD`: minor units in major units at the currency's ISO 4217
    exponent, with thousands separators. A currency missing from the
    exponent table (a newer hub's) prints its raw minor units, marked so."""
    try:
        return Money(currency, minor_units).format()
    except RemitnetError:
        return f"{minor_units:,} {currency or '?'} (minor units)"


def money_of(value: money_pb2.Money) -> str:
    """A `remitnet.common.v1.Money` message, or `-` when it is empty."""
    if not value.currency:
        return "-" if not value.minor_units else f"{value.minor_units:,} (no currency)"
    return money(value.currency, value.minor_units)


def timestamp(value: Timestamp) -> str:
    """UTC ISO 8601 to the second (`2026-12-01T21:02:57Z`), `-` when unset."""
    if not value.seconds and not value.nanos:
        return "-"
    return value.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _upper_snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).upper()


def enum_name(enum: _GeneratedEnum | EnumType, number: int) -> str:
    """An enum value without its type prefix: `enum_name(cpb.TransferStatus,
    cpb.TRANSFER_STATUS_SETTLED)` is `SETTLED`. A number this client does
    not know prints as the number."""
    wrapped = getattr(enum, "DESCRIPTOR", None)  # a generated type, or its descriptor
    descriptor = cast("EnumType", enum if wrapped is None else wrapped)
    value = descriptor.values_by_number.get(number)
    if value is None:
        return str(number)
    prefix = _upper_snake(descriptor.name) + "_"
    return value.name.removeprefix(prefix)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def text(value: str) -> str:
    """Text as one printable line; empty text as `-`."""
    if not value:
        return "-"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def count(value: int) -> str:
    return f"{value:,}"


# -- layout ---------------------------------------------------------------


def table(rows: Sequence[Sequence[str]], header: Sequence[str], left: int | str = 1) -> str:
    """A plain-text table with a rule under the header. `left` is how many
    leading columns are text (left-aligned; the rest are numbers and money,
    right-aligned), or one letter per column: `l` or `r`."""
    align = left if isinstance(left, str) else "l" * left + "r" * (len(header) - left)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.ljust(w) if a == "l" else c.rjust(w)
            for c, w, a in zip(cells, widths, align, strict=True)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def fields(pairs: Iterable[tuple[str, str]]) -> str:
    """A `label  value` block, values aligned."""
    pairs = list(pairs)
    width = max((len(label) for label, _ in pairs), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}".rstrip() for label, value in pairs)


def indent(block: str, prefix: str = "  ") -> str:
    return textwrap.indent(block, prefix)


def sections(*parts: str) -> str:
    """Blocks and tables one blank line apart (empty parts left out)."""
    return "\n\n".join(p for p in parts if p)


# -- money fields ---------------------------------------------------------

# int64 fields that hold minor units, by message: field -> the field naming
# its currency, looked up in the message itself and, when the message has
# no such field or it is empty, taken from the enclosing message (a cycle's
# positions are in the cycle's currency).
MONEY_FIELDS: Final[dict[str, dict[str, str]]] = {}


def money_fields(message_type: type[Message], *names: str, currency: str = "currency") -> None:
    """Declare int64 fields of a message that are minor units of `currency`
    (the name of a string field of the message or of an enclosing one)."""
    spec = MONEY_FIELDS.setdefault(message_type.DESCRIPTOR.full_name, {})
    spec.update(dict.fromkeys(names, currency))


money_fields(ppb.Account, "balance", "net_debit_cap", "unsettled_net", "headroom", "reserved")
money_fields(npb.Cycle, "gross_value", "net_value")
money_fields(npb.NetPosition, "sent", "received", "net")
money_fields(
    npb.CurrencyPosition,
    "balance",
    "net_debit_cap",
    "unsettled_net",
    "headroom",
    "open_cycle_sent",
    "open_cycle_received",
    "reserved",
)
money_fields(spb.SettlementPosting, "amount")
money_fields(spb.StatementEntry, "amount", "balance_after")
money_fields(spb.CurrencyTotal, "balance_sum", "entry_sum")
money_fields(spb.ReconciliationRow, "sent_value", "received_value", "computed_net",
             "position_net", "posted")  # fmt: skip
money_fields(spb.GetReconciliationResponse, "gross_value", "net_value")
money_fields(fxpb.CreateQuoteRequest, "source_amount", currency="source_currency")
money_fields(fxpb.CreateQuoteRequest, "target_amount", currency="target_currency")


def _currency(message: Message, field: str, inherited: str) -> str:
    names = message.DESCRIPTOR.fields_by_name
    if field in names and names[field].type == FieldDescriptor.TYPE_STRING:
        own: str = getattr(message, field)
        if own:
            return own
    return inherited


def _context_currency(message: Message, inherited: str) -> str:
    return _currency(message, "currency", inherited)


# -- generic rendering ----------------------------------------------------

RENDERERS: dict[str, Renderer] = {}

_MONEY = money_pb2.Money.DESCRIPTOR.full_name
_TIMESTAMP = Timestamp.DESCRIPTOR.full_name
_NUMERIC = {
    FieldDescriptor.CPPTYPE_INT32,
    FieldDescriptor.CPPTYPE_INT64,
    FieldDescriptor.CPPTYPE_UINT32,
    FieldDescriptor.CPPTYPE_UINT64,
    FieldDescriptor.CPPTYPE_DOUBLE,
    FieldDescriptor.CPPTYPE_FLOAT,
}


def renderer(message_type: type[Message]) -> Callable[[R], R]:
    """Register the human layout of a message type. The function gets the
    message and the currency of its context ("" at the top) and returns the
    text, without a trailing newline."""

    def register(fn: R) -> R:
        RENDERERS[message_type.DESCRIPTOR.full_name] = fn
        return fn

    return register


def label(field: Field) -> str:
    return field.name.replace("_", " ")


def _is_cell(field: Field) -> bool:
    """A field that prints as one value (not a section or a table)."""
    if field.is_repeated:
        return field.message_type is None
    return field.message_type is None or field.message_type.full_name in (_MONEY, _TIMESTAMP)


def _right_aligned(field: Field) -> bool:
    if field.message_type is not None:
        return field.message_type.full_name == _MONEY
    return field.cpp_type in _NUMERIC


def _unset_alternative(message: Message, field: Field) -> bool:
    oneof = field.containing_oneof
    return oneof is not None and not message.HasField(field.name)


def value(message: Message, field: Field, currency: str = "") -> str:
    """One field of a message as it prints in the human form."""
    raw = getattr(message, field.name)
    if field.is_repeated:  # of scalars: messages make tables
        return ", ".join(_scalar(message, field, v, currency) for v in raw) or "-"
    if field.message_type is not None:
        if field.message_type.full_name == _MONEY:
            return money_of(raw) if message.HasField(field.name) else "-"
        if field.message_type.full_name == _TIMESTAMP:
            return timestamp(raw)
        return render(raw, currency)
    return _scalar(message, field, raw, currency)


def _scalar(message: Message, field: Field, raw: Any, currency: str) -> str:
    if field.enum_type is not None:
        return enum_name(field.enum_type, raw)
    if field.cpp_type == FieldDescriptor.CPPTYPE_BOOL:
        return yes_no(raw)
    if field.cpp_type == FieldDescriptor.CPPTYPE_STRING:
        return text(raw)
    declared = MONEY_FIELDS.get(message.DESCRIPTOR.full_name, {})
    if field.name in declared:
        return money(_currency(message, declared[field.name], currency), raw)
    if field.cpp_type in _NUMERIC and isinstance(raw, int):
        return count(raw)
    return str(raw)


def rows_table(
    messages: Sequence[Message], descriptor: MessageDescriptor, currency: str = ""
) -> str:
    """Repeated messages as a table, one column per single-value field."""
    columns = [f for f in descriptor.fields if _is_cell(f)]
    rows = [[value(m, f, _context_currency(m, currency)) for f in columns] for m in messages]
    align = "".join("r" if _right_aligned(f) else "l" for f in columns)
    return table(rows, [label(f) for f in columns], align)


def pairs(
    message: Message, currency: str = "", labels: dict[str, str] | None = None
) -> list[tuple[str, str]]:
    """The single-value fields of a message as (label, value): the fields
    named in `labels` first, in its order and under its labels, then the
    others in .proto order (so that a field added later still shows)."""
    currency = _context_currency(message, currency)
    labels = labels or {}
    by_name = message.DESCRIPTOR.fields_by_name
    ordered = [by_name[n] for n in labels if n in by_name]
    ordered += [f for f in message.DESCRIPTOR.fields if f.name not in labels]
    return [
        (labels.get(f.name, label(f)), value(message, f, currency))
        for f in ordered
        if _is_cell(f) and not _unset_alternative(message, f)
    ]


def generic(message: Message, currency: str = "") -> str:
    """Any message: its single-value fields as a block, nested messages as
    indented sections, repeated messages as tables."""
    currency = _context_currency(message, currency)
    parts: list[str] = []
    for field in message.DESCRIPTOR.fields:
        if _is_cell(field) or _unset_alternative(message, field):
            continue
        if field.is_repeated:
            assert field.message_type is not None  # repeated scalars are cells
            items = getattr(message, field.name)
            body = rows_table(items, field.message_type, currency) if items else "(none)"
        elif message.HasField(field.name):
            body = render(getattr(message, field.name), currency)
        else:
            body = "-"
        parts.append(f"{label(field)}:\n{indent(body)}")
    return sections(fields(pairs(message, currency)), *parts)


def render(message: Message, currency: str = "") -> str:
    """The human form of a message: its registered layout, else `generic`."""
    layout = RENDERERS.get(message.DESCRIPTOR.full_name, generic)
    return layout(message, currency)


# -- JSON -----------------------------------------------------------------


def _complete(message: Message, out: dict[str, Any]) -> dict[str, Any]:
    """`out` (MessageToDict of `message`) in the .proto's field order, with
    `null` for the fields with presence that are unset (messages, proto3
    optional scalars) other than the unset alternatives of a oneof."""
    done: dict[str, Any] = {}
    for field in message.DESCRIPTOR.fields:
        name = field.name
        if name in out:
            value = out[name]
            if field.message_type is not None and not field.message_type.GetOptions().map_entry:
                if field.is_repeated:
                    items = zip(getattr(message, name), value, strict=True)
                    value = [_complete(m, v) if isinstance(v, dict) else v for m, v in items]
                elif isinstance(value, dict):
                    value = _complete(getattr(message, name), value)
            done[name] = value
            continue
        oneof = field.containing_oneof
        synthetic = oneof is not None and oneof.name == f"_{name}" and len(oneof.fields) == 1
        if field.has_presence and (oneof is None or synthetic):
            done[name] = None
    return done


def to_json(message: Message) -> dict[str, Any]:
    """The JSON form of a message: every field, zeros included (see the
    module docstring)."""
    out = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return _complete(message, out)


def dumps(document: Any) -> str:
    return jsonlib.dumps(document, indent=2, ensure_ascii=False)


def print_message(message: Message, *, json: bool = False, file: IO[str] | None = None) -> None:
    """Print an answer: human form, or with json=True one JSON document."""
    out = file or sys.stdout
    print(dumps(to_json(message)) if json else render(message), file=out)


# -- errors ---------------------------------------------------------------

# No answer came back: the call may not have reached the hub, or its answer
# was lost. A status the hub sent carries its ErrorInfo reason.
NO_ANSWER: Final = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def unreachable(err: HubError) -> bool:
    """The hub did not answer (UNAVAILABLE or DEADLINE_EXCEEDED without the
    hub's ErrorInfo), as opposed to refusing."""
    return err.code in NO_ANSWER and not err.reason


def _token(value: str) -> str:
    plain = value and all(c.isprintable() and not c.isspace() and c not in "\"'" for c in value)
    return value if plain else jsonlib.dumps(value, ensure_ascii=False)


def outcome(err: HubError | RemitnetError) -> str:
    """`refused` (the hub answered with an error status), `unreachable` (no
    answer) or `invalid` (refused here, before anything was sent)."""
    if isinstance(err, RemitnetError):
        return "invalid"
    return "unreachable" if unreachable(err) else "refused"


def _code(err: HubError | RemitnetError) -> str:
    return err.kind.value if isinstance(err, RemitnetError) else err.code.name


def error_line(err: HubError | RemitnetError) -> str:
    """`refused: FAILED_PRECONDITION INSUFFICIENT_LIQUIDITY bank=BANKUS01
    currency=USD: amount exceeds ...`: outcome, gRPC code, ErrorInfo reason
    and metadata, message, on one line."""
    words = [f"{outcome(err)}:", _code(err)]
    if err.reason:
        words.append(err.reason)
    words += [f"{key}={_token(v)}" for key, v in sorted(err.metadata.items())]
    message = " ".join(err.message.split())
    return " ".join(words) + (f": {text(message)}" if message else "")


def error_json(err: HubError | RemitnetError) -> dict[str, Any]:
    """The JSON document of an error: {"error": {outcome, code, reason,
    metadata, message}}."""
    return {
        "error": {
            "outcome": outcome(err),
            "code": _code(err),
            "reason": err.reason,
            "metadata": dict(sorted(err.metadata.items())),
            "message": err.message,
        }
    }


# -- layouts of the hub's answers -----------------------------------------


def _net_ratio(gross: int, net: int) -> str:
    return f"{gross / net:.1f}x (gross / net)" if net else "-"


@renderer(ppb.Bank)
def bank(b: ppb.Bank, _currency: str = "") -> str:
    head = fields(pairs(b, labels={"code": "bank"}))
    return sections(head, accounts(b.accounts) if b.accounts else "accounts: (none)")


ACCOUNT_COLUMNS: Final = ["balance", "net debit cap", "unsettled net", "reserved", "headroom"]


def accounts(items: Iterable[ppb.Account]) -> str:
    rows = [[a.currency, *(money(a.currency, v) for v in _account_amounts(a))] for a in items]
    return table(rows, ["currency", *ACCOUNT_COLUMNS])


def _account_amounts(a: ppb.Account) -> list[int]:
    """headroom = balance + net debit cap + unsettled net - reserved."""
    return [a.balance, a.net_debit_cap, a.unsettled_net, a.reserved, a.headroom]


@renderer(ppb.ListBanksResponse)
def banks(response: ppb.ListBanksResponse, _currency: str = "") -> str:
    """One row per account (a bank without accounts: one row)."""
    if not response.banks:
        return "no banks"
    rows = []
    for b in response.banks:
        head = [b.code, text(b.name), text(b.home_region), enum_name(ppb.BankStatus, b.status)]
        tail = [roles(b.roles)]
        for a in b.accounts or [None]:
            if a is None:
                rows.append([*head, "-", *["-"] * len(ACCOUNT_COLUMNS), *tail])
            else:
                amounts = [money(a.currency, v) for v in _account_amounts(a)]
                rows.append([*head, a.currency, *amounts, *tail])
    header = ["bank", "name", "home region", "status", "currency", *ACCOUNT_COLUMNS, "roles"]
    return table(rows, header, "lllll" + "r" * len(ACCOUNT_COLUMNS) + "l")


def roles(values: Iterable[int]) -> str:
    """A participant's roles, `BANK`, `FX_PROVIDER` or `BANK, FX_PROVIDER`
    (none stated: a hub from before roles, so a bank)."""
    return ", ".join(enum_name(ppb.ParticipantRole, v) for v in values) or "BANK"


@renderer(fxpb.CreateQuoteResponse)
def quoted(response: fxpb.CreateQuoteResponse, _currency: str = "") -> str:
    """The quote itself, its provider (who sells the target) among its
    fields."""
    return render(response.quote)


@renderer(fxpb.ListRatesResponse)
def rates(response: fxpb.ListRatesResponse, _currency: str = "") -> str:
    """One row per provider and pair; spread `-` means the hub's corridor
    spread."""
    if not response.rates:
        return "no rates"
    rows = [
        [r.provider or "-", f"{r.base_currency}/{r.quote_currency}", r.mid_rate,
         count(r.spread_bps) if r.HasField("spread_bps") else "-", timestamp(r.as_of)]
        for r in response.rates
    ]  # fmt: skip
    return table(rows, ["provider", "pair", "mid rate", "spread bps", "as of"], "llrrl")


@renderer(ppb.Account)
def account(a: ppb.Account, _currency: str = "") -> str:
    return fields(pairs(a, labels={"bank_code": "bank"}))


TRANSFER_LABELS: Final = {
    "transfer_id": "transfer",
    "debtor_bank": "debtor",
    "creditor_bank": "creditor",
    "amount": "amount",
    "creditor_amount": "creditor amount",
    "status": "status",
    "reason": "reason",
    "cycle_id": "cycle",
    "creditor_cycle_id": "creditor cycle",
    "settlement_mode": "settlement mode",
    "accepted_at": "accepted at",
    "confirmation_deadline": "confirm by",
    "resolved_at": "resolved at",
    "return_of_transfer_id": "return of",
    "returned_by_transfer_id": "returned by",
    "quote_id": "quote",
}

RECALL_LABELS: Final = {
    "recall_id": "recall",
    "transfer_id": "transfer",
    "debtor_bank": "debtor",
    "creditor_bank": "creditor",
    "state": "state",
    "reason": "reason",
    "additional_info": "additional info",
    "requested_at": "requested at",
    "deadline": "answer by",
    "answered_at": "answered at",
    "answer_reason": "answer reason",
    "return_transfer_id": "return",
}


def reason_code(code: str, codes: dict[str, str]) -> str:
    """An ISO 20022 reason code with its name, `AC04 ClosedAccountNumber`
    (a code not in `codes`, or free text such as an operator's reason,
    as it is; empty: `-`)."""
    name = codes.get(code)
    return f"{code} {name}" if name else text(code)


def transfer_reason(t: cpb.Transfer) -> str:
    """`Transfer.reason` read in its context: a return's return reason, a
    rejection's status reason, an expiry's AB05, an operator's cancel text."""
    if t.return_of_transfer_id:
        return reason_code(t.reason, lifecycle.RETURN_REASONS)
    if t.status == cpb.TRANSFER_STATUS_EXPIRED and t.reason == lifecycle.EXPIRY_REASON:
        return f"{t.reason} TimeoutCreditorAgent"
    if t.status == cpb.TRANSFER_STATUS_REJECTED:
        return reason_code(t.reason, lifecycle.REJECT_REASONS)
    return text(t.reason)


def recall_line(r: cpb.Recall) -> str:
    """A recall in one cell: `REQUESTED DUPL`, `ACCEPTED DUPL`,
    `REJECTED DUPL -> NOAS`."""
    line = f"{enum_name(cpb.RecallState, r.state)} {r.reason}"
    return f"{line} -> {r.answer_reason}" if r.answer_reason else line


def _transfer_pairs(t: cpb.Transfer) -> list[tuple[str, str]]:
    block = pairs(t, labels=TRANSFER_LABELS)
    reason = transfer_reason(t)
    return [(k, reason if k == "reason" else v) for k, v in block]


@renderer(cpb.Recall)
def recall(r: cpb.Recall, _currency: str = "") -> str:
    block = pairs(r, labels=RECALL_LABELS)
    named = {
        "reason": reason_code(r.reason, lifecycle.RECALL_REASONS),
        "answer reason": reason_code(r.answer_reason, lifecycle.RECALL_REJECT_REASONS),
    }
    return fields([(k, named.get(k, v)) for k, v in block])


@renderer(cpb.Transfer)
def transfer(t: cpb.Transfer, _currency: str = "") -> str:
    """The transfer's fields (the lifecycle's among them: its confirmation
    deadline, reason, return links), then its recall if it has one."""
    if not t.HasField("recall"):
        return fields([*_transfer_pairs(t), ("recall", "-")])
    return sections(fields(_transfer_pairs(t)), "recall:\n" + indent(recall(t.recall)))


@renderer(cpb.SubmitTransferResponse)
def submitted(response: cpb.SubmitTransferResponse, _currency: str = "") -> str:
    block = _transfer_pairs(response.transfer)
    return fields([*block, ("replayed", yes_no(response.replayed))])


@renderer(cpb.GetTransferResponse)
def got_transfer(response: cpb.GetTransferResponse, _currency: str = "") -> str:
    return transfer(response.transfer)


@renderer(cpb.CancelTransferResponse)
def cancelled(response: cpb.CancelTransferResponse, _currency: str = "") -> str:
    return transfer(response.transfer)


@renderer(npb.CancelTransferResponse)
def operator_cancelled(response: npb.CancelTransferResponse, _currency: str = "") -> str:
    return transfer(response.transfer)


@renderer(cpb.ConfirmTransferResponse)
def confirmed(response: cpb.ConfirmTransferResponse, _currency: str = "") -> str:
    block = _transfer_pairs(response.transfer)
    return fields([*block, ("replayed", yes_no(response.replayed))])


@renderer(cpb.ReturnTransferResponse)
def returned(response: cpb.ReturnTransferResponse, _currency: str = "") -> str:
    block = _transfer_pairs(response.return_transfer)
    return fields([*block, ("replayed", yes_no(response.replayed))])


@renderer(cpb.RecallTransferResponse)
def recalled(response: cpb.RecallTransferResponse, _currency: str = "") -> str:
    return sections(recall(response.recall), fields([("replayed", yes_no(response.replayed))]))


@renderer(cpb.AnswerRecallResponse)
def recall_answered(response: cpb.AnswerRecallResponse, _currency: str = "") -> str:
    """The recall as answered, then (accepted) the return that answered it."""
    parts = [recall(response.recall), fields([("replayed", yes_no(response.replayed))])]
    if response.HasField("return_transfer"):
        parts.append("return:\n" + indent(fields(_transfer_pairs(response.return_transfer))))
    return sections(*parts)


@renderer(cpb.ConfirmTransfersResponse)
def confirmed_many(response: cpb.ConfirmTransfersResponse, _currency: str = "") -> str:
    """Counts, then one row per answer in request order: the transfer as
    answered, or the refusal's reason."""
    head = fields(
        [
            ("answered", count(response.accepted_count)),
            ("refused", count(response.rejected_count)),
        ]
    )
    rows = []
    for r in response.results:
        if r.HasField("transfer"):
            t = r.transfer
            outcome = enum_name(cpb.TransferStatus, t.status)
            rows.append([text(r.transfer_id), outcome, transfer_reason(t), yes_no(r.replayed)])
        else:
            rows.append([text(r.transfer_id), "refused", r.error.reason, "-"])
    body = table(rows, ["transfer", "outcome", "reason", "replayed"], 4) if rows else ""
    return sections(head, body)


def transfer_rows(items: Sequence[cpb.Transfer]) -> str:
    """Transfers one a row: parties, amount, status with its reason, the
    confirmation deadline, return links and recall."""
    rows = []
    for t in items:
        link = ""
        if t.return_of_transfer_id:
            link = f"return of {t.return_of_transfer_id}"
        elif t.returned_by_transfer_id:
            link = f"returned by {t.returned_by_transfer_id}"
        reason = transfer_reason(t) if t.reason else "-"
        rows.append([
            t.transfer_id, t.debtor_bank, t.creditor_bank, money_of(t.amount),
            enum_name(cpb.TransferStatus, t.status), reason, t.cycle_id or "-",
            timestamp(t.confirmation_deadline), link or "-",
            recall_line(t.recall) if t.HasField("recall") else "-",
        ])  # fmt: skip
    header = ["transfer", "debtor", "creditor", "amount", "status", "reason", "cycle",
              "confirm by", "return", "recall"]  # fmt: skip
    return table(rows, header, "lllrllllll")


def event_row(e: cpb.StatusEvent) -> list[str]:
    """One status event as [at, event, id, status, detail]: a transfer's new
    status (RESERVED: the creditor's cue to confirm by its deadline), a
    cycle's, or a recall's new state (REQUESTED: the creditor's cue to
    answer)."""
    at = timestamp(e.at)
    if e.HasField("transfer"):
        t = e.transfer
        status = enum_name(cpb.TransferStatus, t.status)
        detail = f"{t.debtor_bank} -> {t.creditor_bank} {money_of(t.amount)}"
        if t.status == cpb.TRANSFER_STATUS_RESERVED:
            detail += f", confirm by {timestamp(t.confirmation_deadline)}"
        if t.return_of_transfer_id:
            detail += f", return of {t.return_of_transfer_id}"
        if t.reason:
            detail += f", reason {transfer_reason(t)}"
        kind = "return" if t.return_of_transfer_id else "transfer"
        return [at, kind, t.transfer_id, status, detail]
    if e.HasField("recall"):
        r = e.recall
        why = reason_code(r.reason, lifecycle.RECALL_REASONS)
        detail = f"{r.debtor_bank} asks {r.creditor_bank}, {why}"
        if r.state == cpb.RECALL_STATE_REQUESTED:
            detail += f", answer by {timestamp(r.deadline)}"
        if r.answer_reason:
            detail += f", answer {reason_code(r.answer_reason, lifecycle.RECALL_REJECT_REASONS)}"
        if r.return_transfer_id:
            detail += f", return {r.return_transfer_id}"
        return [at, "recall", r.transfer_id, enum_name(cpb.RecallState, r.state), detail]
    if e.HasField("cycle"):
        c = e.cycle
        return [at, "cycle", c.cycle_id, enum_name(cpb.TransferStatus, c.status), c.currency]
    return [at, "unknown", "-", "-", "an event this client does not know"]


@renderer(cpb.WatchTransfersResponse)
def events(response: cpb.WatchTransfersResponse, _currency: str = "") -> str:
    """The events one a row; the last one's resume_token continues after it."""
    if not response.events:
        return "no events"
    rows = [event_row(e) for e in response.events]
    body = table(rows, ["at", "event", "id", "status", "detail"], 5)
    return sections(body, fields([("resume token", response.events[-1].resume_token)]))


@renderer(cpb.ListTransfersResponse)
def transfers(response: cpb.ListTransfersResponse, _currency: str = "") -> str:
    if not response.transfers:
        return "no transfers"
    more = f"more: --page-token {response.next_page_token}" if response.next_page_token else ""
    return sections(transfer_rows(response.transfers), more)


def positions(cycle: npb.Cycle, posted: dict[str, int] | None = None) -> str:
    """A cycle's multilateral net positions per participant; with `posted`
    (bank -> settlement posting) a column of what settlement posted."""
    ccy = cycle.currency
    header = ["participant", "sent", "received", "net position", "transfers sent",
              "transfers received"]  # fmt: skip
    rows = []
    for p in cycle.positions:
        row = [p.bank_code, money(ccy, p.sent), money(ccy, p.received), money(ccy, p.net),
               count(p.sent_count), count(p.received_count)]  # fmt: skip
        if posted is not None:
            row.append(money(ccy, posted.get(p.bank_code, 0)))
        rows.append(row)
    if posted is not None:
        header.append("posted")
    return table(rows, header)


CYCLE_LABELS: Final = {
    "cycle_id": "cycle",
    "currency": "currency",
    "state": "state",
    "opened_at": "opened at",
    "closed_at": "closed at",
    "settled_at": "settled at",
    "transfer_count": "transfers",
}


def cycle_summary(c: npb.Cycle) -> str:
    block = pairs(c, labels=CYCLE_LABELS)
    extra = [("netting efficiency", _net_ratio(c.gross_value, c.net_value))]
    if c.HasField("audit_chain_head"):
        head = c.audit_chain_head
        extra.append(("audit chain head", f"#{head.sequence} {head.hash}"))
    return fields([*block, *extra])


@renderer(npb.Cycle)
def cycle(c: npb.Cycle, _currency: str = "") -> str:
    return sections(cycle_summary(c), positions(c) if c.positions else "positions: (none)")


@renderer(npb.ListCyclesResponse)
def cycles(response: npb.ListCyclesResponse, _currency: str = "") -> str:
    if not response.cycles:
        return "no cycles"
    rows = [
        [c.cycle_id, c.currency, enum_name(npb.CycleState, c.state), timestamp(c.opened_at),
         timestamp(c.closed_at), timestamp(c.settled_at), count(c.transfer_count),
         money(c.currency, c.gross_value), money(c.currency, c.net_value)]
        for c in response.cycles
    ]  # fmt: skip
    header = ["cycle", "currency", "state", "opened at", "closed at", "settled at", "transfers",
              "gross value", "net value"]  # fmt: skip
    return table(rows, header, 6)


@renderer(npb.CloseCycleResponse)
def closed(response: npb.CloseCycleResponse, _currency: str = "") -> str:
    opened = response.opened
    return sections(
        cycle(response.closed),
        fields(
            [("next open cycle", f"{opened.cycle_id} ({enum_name(npb.CycleState, opened.state)})")]
        ),
    )


@renderer(spb.SettleCycleResponse)
def settled(response: spb.SettleCycleResponse, _currency: str = "") -> str:
    ccy = response.currency
    head = fields(
        [
            ("cycle", response.cycle_id),
            ("currency", ccy),
            ("settled at", timestamp(response.settled_at)),
            ("already settled", yes_no(response.already_settled)),
            ("postings", count(len(response.postings))),
        ]
    )
    rows = [[p.bank_code, money(ccy, p.amount)] for p in response.postings]
    return sections(head, table(rows, ["participant", "posted"]) if rows else "")


@renderer(spb.GetStatementResponse)
def statement(st: spb.GetStatementResponse, _currency: str = "") -> str:
    """Opening balance, the entries with the balance after each, closing
    balance: the opening plus the entries is the closing."""
    ccy = st.currency
    rows = [
        [str(e.sequence), timestamp(e.posted_at), enum_name(spb.EntryKind, e.kind),
         text(e.reference), money(ccy, e.amount), money(ccy, e.balance_after)]
        for e in st.entries
    ]  # fmt: skip
    entries = (
        table(rows, ["seq", "posted at", "kind", "reference", "amount", "balance"], "rlllrr")
        if rows
        else "no entries"
    )
    more = (
        f"more entries follow sequence {st.next_after_sequence}" if st.next_after_sequence else ""
    )
    return sections(
        fields(
            [
                ("statement", f"{st.bank_code} {ccy}"),
                ("opening balance", money_of(st.opening_balance)),
            ]
        ),
        entries,
        fields([("closing balance", money_of(st.closing_balance))]),
        more,
    )


def ledger_check(total: spb.CurrencyTotal) -> str:
    """`yes`, or `NO: ...` naming the sums that are not zero."""
    wrong = [name for name, v in (("sum of entries", total.entry_sum),
                                  ("sum of balances", total.balance_sum)) if v]  # fmt: skip
    return "yes" if not wrong else "NO: " + ", ".join(wrong) + " not zero"


@renderer(spb.GetLedgerBalanceResponse)
def ledger(response: spb.GetLedgerBalanceResponse, _currency: str = "") -> str:
    """Per currency: entries, the sum of entries and of balances, and
    whether both are zero (double entry: they must be)."""
    if not response.currencies:
        return "no ledger entries"
    rows = [
        [t.currency, count(t.entry_count), money(t.currency, t.entry_sum),
         money(t.currency, t.balance_sum), ledger_check(t)]
        for t in response.currencies
    ]  # fmt: skip
    bad = [t.currency for t in response.currencies if t.entry_sum or t.balance_sum]
    verdict = (
        "the ledger sums to zero in every currency: OK"
        if not bad
        else f"the ledger does NOT sum to zero in {', '.join(bad)}: FAILED"
    )
    header = ["currency", "entries", "sum of entries", "sum of balances", "both zero"]
    return sections(table(rows, header, "lrrrl"), verdict)


@renderer(spb.GetReconciliationResponse)
def reconciliation(rec: spb.GetReconciliationResponse, _currency: str = "") -> str:
    """Per participant, three independent figures side by side: the cycle's
    transfers recomputed, the netted position, the settlement posting."""
    ccy = rec.currency
    head = fields(
        [
            ("cycle", rec.cycle_id),
            ("currency", ccy),
            ("settled", yes_no(rec.settled)),
            ("transfers", count(rec.transfer_count)),
            ("gross value", money(ccy, rec.gross_value)),
            ("net value", money(ccy, rec.net_value)),
            ("all matched", yes_no(rec.all_matched)),
        ]
    )
    rows = [
        [r.bank_code, count(r.transfers_sent), count(r.transfers_received),
         *(money(ccy, v) for v in (r.sent_value, r.received_value, r.computed_net,
                                   r.position_net, r.posted)),
         yes_no(r.matched) if r.matched else "NO"]
        for r in rec.rows
    ]  # fmt: skip
    header = ["participant", "transfers sent", "transfers received", "sent value",
              "received value", "computed net", "position net", "posted", "matched"]  # fmt: skip
    return sections(head, table(rows, header, "lrrrrrrrl") if rows else "")
