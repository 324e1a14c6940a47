"""Small helpers and field types shared by the wire schemas.

Every value of a request body passes through one of these types before any service or database sees it,
so hostile input (docs/api.md, "Input limits") is refused the same way on SQLite and PostgreSQL:
- `Text` (`WireText`), `WireSecret`: strings without control characters or lone surrogates, as long as
  the column at most;
- `WireId`: an integer id inside the databases' signed 64-bit range;
- `WireDateTime`: an ISO 8601 instant that exists in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SecretStr,
    StrictInt,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

# BIGINT on PostgreSQL and INTEGER on SQLite are both signed 64-bit: a larger id names nothing, and the
# drivers raise (asyncpg: out of range; sqlite3: OverflowError) instead of finding nothing.
MAX_ID = 2**63 - 1

# Refused in every string of a body: C0 and C1 controls and DEL (Unicode category Cc), tab and line
# breaks included, because every such field is one line (a name, an identifier, a secret) and NUL is
# refused by PostgreSQL's text; lone surrogates (Cs) because they are not text at all: they cannot be
# encoded as UTF-8 for either database or for Microsoft. A surrogate *pair* escape is one character.
_REFUSED = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The same rule in the OpenAPI document (an ECMA-262 pattern), so that clients and fuzzers see it.
TEXT_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f\ud800-\udfff]*$"
_TEXT_ERROR = "must not contain control characters or unpaired surrogates"


def _clean_text(value: str) -> str:
    if _REFUSED.search(value):
        # A custom error so the message is exactly ours; it never repeats the value (it may be a secret).
        raise PydanticCustomError("text_refused", _TEXT_ERROR)
    return value


def _clean_if_text(value: object) -> object:
    # Anything but a string goes on to the strict string check, which refuses it with its own message.
    return _clean_text(value) if isinstance(value, str) else value


def _clean_secret(value: SecretStr) -> SecretStr:
    _clean_text(value.get_secret_value())
    return value


@dataclass(frozen=True)
class Text:
    """A JSON string (strict) of printable text, at most `max_length` characters (code points, as both
    databases count them): `Annotated[str, Text(max_length=256)]`, the length being the column's."""

    min_length: int | None = None
    max_length: int | None = None

    def __get_pydantic_core_schema__(self, _source: Any, _handler: GetCoreSchemaHandler) -> CoreSchema:
        """The characters first (pydantic cannot even count a lone surrogate), then the length."""
        length = core_schema.str_schema(strict=True, min_length=self.min_length, max_length=self.max_length)
        return core_schema.no_info_before_validator_function(_clean_if_text, length)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        """The string's lengths, and the refused characters as a pattern."""
        return {**handler(schema), "pattern": TEXT_PATTERN}


WireText = Annotated[str, Text()]
WireSecret = Annotated[
    SecretStr, AfterValidator(_clean_secret), Field(json_schema_extra={"pattern": TEXT_PATTERN})
]


def _int64_json_schema(schema: dict[str, Any]) -> None:
    # FastAPI's OpenAPI model keeps `maximum` as a float, which prints 2**63 - 1 rounded up to 2**63 (past
    # the bound); OpenAPI's `int64` format states the same bound exactly.
    schema.pop("maximum", None)
    schema["format"] = "int64"


# A JSON integer (strict: not "12", not true) that can be a row's id: 1 to 2**63 - 1.
WireId = Annotated[StrictInt, Field(ge=1, le=MAX_ID, json_schema_extra=_int64_json_schema)]


class OutsideUTCRange(ValueError):
    """An ISO 8601 date-time whose instant has no UTC date-time (before year 1 or after year 9999)."""


def iso_z(moment: datetime | None) -> str | None:
    """ISO 8601, UTC, seconds precision, with `Z` (API.md §1)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso_datetime(text: str) -> datetime:
    """An ISO 8601 date-time (no zone means UTC) or a date (the end of that day, UTC).

    OutsideUTCRange (a ValueError) when the instant has no UTC date-time: 9999-12-31T23:59:59-01:00 is
    in year 10000, which `datetime` cannot hold (it raised OverflowError, a 500, before).
    """
    value = text.strip()
    if len(value) == 10:
        day = datetime.fromisoformat(value).date()
        return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise OutsideUTCRange(value) from None


def _parse_wire_datetime(value: object) -> datetime:
    if not isinstance(value, str):
        raise PydanticCustomError("datetime_type", "must be an ISO 8601 date-time string")
    try:
        return parse_iso_datetime(value)
    except OutsideUTCRange:
        raise PydanticCustomError(
            "datetime_range", "must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z in UTC"
        ) from None
    except ValueError:
        raise PydanticCustomError(
            "datetime_parsing", "must be an ISO 8601 date-time such as 2027-11-28T23:59:59Z"
        ) from None


# A JSON string only (strict), parsed by us: no zone means UTC, a bare date means the end of that day, and
# the instant must exist in UTC (years 1 to 9999), the range every backend and `iso_z` can hold.
WireDateTime = Annotated[datetime, BeforeValidator(_parse_wire_datetime)]
