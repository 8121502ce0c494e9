"""Keys and amounts as one PostgreSQL array literal, for `CAST(:keys AS
VARCHAR[])` and `CAST(:amounts AS BIGINT[])`.

psycopg dumps a Python list of str element by element, with a regular
expression per element to decide its quoting: for the thousands of bank
codes, account ids and amounts of a close or a settlement that costs more than the
statement. Joined into one literal here, every element quoted (so that a
code such as NULL stays a string), the driver sends a single string that
PostgreSQL (and CockroachDB) cast to the array.
"""

from __future__ import annotations

from collections.abc import Collection


def text_array(keys: Collection[str]) -> str:
    """`keys` as an array literal: '{"A","B"}'."""
    if not keys:
        return "{}"
    body = '","'.join(keys)
    # Codes and ids are validated and hold no quote or backslash: escape
    # only if one does.
    if "\\" in body or body.count('"') != 2 * (len(keys) - 1):
        body = '","'.join(map(_escaped, keys))
    return '{"' + body + '"}'


def nullable_text_array(values: Collection[str | None]) -> str:
    """`values` as an array literal, None as an unquoted NULL element:
    '{"A",NULL}' (for optional ids, such as an event's transfer id)."""
    present = [v for v in values if v is not None]
    # A close's or a settlement's events all lack a transfer id and all name
    # the cycle: one join, not an element at a time.
    if not present:
        return "{" + ",".join(["NULL"] * len(values)) + "}"
    if len(present) == len(values):
        return text_array(present)
    return "{" + ",".join("NULL" if v is None else f'"{_escaped(v)}"' for v in values) + "}"


def _escaped(value: str) -> str:
    """`value` as an element of a quoted array literal: backslash and
    double quote escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def int_array(values: Collection[int]) -> str:
    """`values` as an array literal: '{1,-2}' (for `CAST(:v AS BIGINT[])`)."""
    return "{" + ",".join(map(str, values)) + "}"
