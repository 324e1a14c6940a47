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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from m365connect.client.errors import InputError
from m365connect.client.http import ItemResult
from m365connect.explanations import Context, explain

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


def _decode(data: bytes) -> str:
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
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    return parse_input(path.read_bytes(), name=str(path))


def parse_input(data: bytes, *, name: str) -> InputFile:
    """The mailboxes of a CSV file's bytes (`name` is how the error messages call the file); the console's
    import page reads uploads with it."""
    text = _decode(data)
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
        raise InputError(f"no mailbox in {name}")
    return InputFile(rows=rows, delimiter=delimiter, bom=bom)


def write_results(path: Path, rows: Sequence[Sequence[str]], *, delimiter: str, bom: bool) -> None:
    """Write the results table (RESULT_COLUMNS, then one row per input row)."""
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as output:
        output.write(results_text([RESULT_COLUMNS, *rows], delimiter=delimiter))


def results_text(rows: Iterable[Sequence[str]], *, delimiter: str) -> str:
    """Rows of the results table as CSV text (CRLF line ends, as Excel writes them); the header is the
    row RESULT_COLUMNS. The console's results download streams its pages through this."""
    output = io.StringIO(newline="")
    csv.writer(output, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return output.getvalue()


def result_row(
    row: InputRow, item: ItemResult | None, base: Context, *, job_id: int | None = None
) -> list[str]:
    """One row of the results table: the input row, then its result (`None`: a cancelled job never got
    to it) with each failure explained for this mailbox."""
    if item is None:
        unprocessed = f"Not processed: job {job_id} was cancelled before this row; submit it again."
        return [row.mailbox_email, row.display_name or "", "false", "", "", unprocessed, *[""] * 8]
    return [
        row.mailbox_email,
        row.display_name or "",
        "true" if item.success else "false",
        "" if item.id is None else str(item.id),
        item.error or "",
        "" if item.error is None else explain(item.error, item_context(item, base)),
        item.primary_email or "",
        _flag(item.spf_correct),
        _flag(item.dkim_correct),
        _flag(item.dmarc_correct),
        item.spf_reason or "",
        item.dkim_reason or "",
        item.dmarc_reason or "",
        item.mailbox_type or "",
    ]


def item_context(item: ItemResult, base: Context) -> Context:
    """The explanation context of one result."""
    return replace(base, mailbox_email=item.email, primary_email=item.primary_email)


def _flag(value: bool | None) -> str:
    return "" if value is None else str(value).lower()
