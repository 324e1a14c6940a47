"""The client's CSV files: mailboxes in (plain or as Excel exports them), one result per row out.

Input: a header row naming `mailbox_email` (and optionally `display_name`), names compared ignoring case,
spaces and hyphens; extra columns are ignored. Without a header, the columns are `mailbox_email,
display_name` when the first cell is an address. The delimiter (`,` `;` or tab), a UTF-8 byte order
mark and CRLF line ends are recognised; a file that is not UTF-8 is read as Windows-1252 (Excel's
"CSV" on Windows). Rows whose cells are all empty are skipped. The results file uses the input's
delimiter and byte order mark, so that Excel opens it the same way.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from m365connect.client.errors import InputError

EMAIL_COLUMN = "mailbox_email"
NAME_COLUMN = "display_name"
DELIMITERS = (",", ";", "\t")
BOM = "\ufeff"
RESULT_COLUMNS = (
    "mailbox_email",
    "display_name",
    "success",
    "id",
    "error",
    "explanation",
    "primary_email",
    "spf_correct",
    "dkim_correct",
    "dmarc_correct",
    "spf_reason",
    "dkim_reason",
    "dmarc_reason",
    "mailbox_type",
)


@dataclass(frozen=True)
class InputRow:
    """One mailbox of the input file, as written there."""

    mailbox_email: str
    display_name: str | None


@dataclass(frozen=True)
class InputFile:
    """The rows of an input file and how it was written."""

    rows: list[InputRow]
    delimiter: str
    bom: bool


def _normalise(header: str) -> str:
    return header.strip().lower().replace(" ", "_").replace("-", "_")


def _decode(path: Path) -> str:
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _first_row(text: str, delimiter: str) -> list[str]:
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if any(cell.strip() for cell in row):
            return row
    return []


def _layout(text: str) -> tuple[str, int, int | None, bool]:
    """(delimiter, email column, name column, has header) of the file."""
    for delimiter in DELIMITERS:
        header = [_normalise(cell) for cell in _first_row(text, delimiter)]
        if EMAIL_COLUMN in header:
            name = header.index(NAME_COLUMN) if NAME_COLUMN in header else None
            return delimiter, header.index(EMAIL_COLUMN), name, True
    for delimiter in DELIMITERS:
        first = _first_row(text, delimiter)
        if len(first) >= 2 and "@" in first[0]:
            return delimiter, 0, 1, False
    first = _first_row(text, ",")
    if len(first) == 1 and "@" in first[0]:
        return ",", 0, None, False
    if not first:
        raise InputError("the file has no rows")
    raise _no_email_column(text)


def _no_email_column(text: str) -> InputError:
    """The error for a first row without mailbox_email, split and exemplified with the file's own
    delimiter: telling a `;` file to name its columns `a,b` would send the user the wrong way."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:  # a single column: nothing to detect
        delimiter = ","
    first = _first_row(text, delimiter)
    shown, between = ("<tab>", "tabs") if delimiter == "\t" else (delimiter, f"'{delimiter}'")
    seems = f" (the file seems to use {between} between columns)" if delimiter != "," else ""
    return InputError(
        f"no {EMAIL_COLUMN} column: the first row has {first!r}{seems}; name the columns "
        f"{EMAIL_COLUMN}{shown}{NAME_COLUMN} (a header row) or put the address first"
    )


def read_input(path: Path) -> InputFile:
    """The mailboxes of a CSV file."""
    text = _decode(path)
    bom = text.startswith(BOM)
    text = text.removeprefix(BOM)
    delimiter, email_at, name_at, has_header = _layout(text)
    rows: list[InputRow] = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    seen_header = not has_header
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        if not seen_header:
            seen_header = True
            continue
        email = cells[email_at].strip() if email_at < len(cells) else ""
        name = cells[name_at].strip() if name_at is not None and name_at < len(cells) else ""
        rows.append(InputRow(mailbox_email=email, display_name=name or None))
    if not rows:
        raise InputError(f"no mailbox in {path}")
    return InputFile(rows=rows, delimiter=delimiter, bom=bom)


def write_results(path: Path, rows: Sequence[Sequence[str]], *, delimiter: str, bom: bool) -> None:
    """Write the results table (RESULT_COLUMNS, then one row per input row)."""
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as output:
        writer = csv.writer(output, delimiter=delimiter, lineterminator="\r\n")
        writer.writerow(RESULT_COLUMNS)
        writer.writerows(rows)
