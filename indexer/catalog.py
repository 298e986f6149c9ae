"""Read product catalogs (JSONL, CSV, TSV; each optionally gzip'd), validating every row.

A bad row never stops a read: it is skipped and reported as a :class:`BadRow` with
``file:line`` and a reason naming the field. Problems of the whole file raise
:class:`CatalogError`. Lines are read as bytes and decoded one by one, so a line of
invalid UTF-8 is reported with its number and the rest of the file still parses.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import json
import math
import os
import zlib
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Iterator

from search.errors import SemsearchError
from search.product import Product

JSON_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson"})
CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
REPORTED_IN_MESSAGE = 5  # how many bad rows TooManyBadRows quotes
_CSV_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
_QUOTE = ord('"')


@dataclass(frozen=True)
class BadRow:
    """A skipped row: ``path`` as the caller gave it, 1-based physical ``line``, ``reason``."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """Size caps in UTF-8 bytes (``max_field_bytes``: category, brand); ValueError unless positive ints."""

    max_id_bytes: int = 1024
    max_title_bytes: int = 4096
    max_field_bytes: int = 4096
    max_description_bytes: int = 32768

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name} must be a positive integer, got {value!r}")


class CatalogError(SemsearchError):
    """The catalog file as a whole cannot be read; the message names the path."""

    status = "INVALID_ARGUMENT"


class TooManyBadRows(CatalogError):
    """More bad rows than ``max_bad``; ``first`` holds the first few reports."""

    def __init__(self, path: str, count: int, max_bad: int, first: tuple[BadRow, ...]) -> None:
        self.path, self.count, self.max_bad, self.first = path, count, max_bad, first
        shown = "\n  ".join(str(bad) for bad in first)
        super().__init__(f"{path}: {count} bad rows exceed max_bad={max_bad}; first:\n  {shown}")


@dataclass
class CatalogReport:
    """Everything one read produced; ``rows`` counts data rows seen (valid + bad)."""

    products: list[Product]
    bad: list[BadRow]
    rows: int


class _Bad(Exception):
    """A row-level problem; its message is the BadRow reason."""


def read_catalog(
    path: str | os.PathLike[str],
    *,
    limits: Limits = Limits(),
    max_bad: int | None = None,
    on_bad: Callable[[BadRow], None] | None = None,
) -> Iterator[Product]:
    """Yield the valid products of a catalog in file order; pass each bad row to ``on_bad``.

    The format comes from the suffix (``.jsonl``/``.json``/``.ndjson``, ``.csv``,
    ``.tsv``, each optionally followed by ``.gz``). Of rows sharing an id the first
    valid one is kept. Raises at once CatalogError for an unknown suffix and
    ValueError for a negative ``max_bad``; while iterating, raises CatalogError for
    other file-level problems (possibly after some products were yielded) and
    TooManyBadRows as soon as the count of bad rows exceeds ``max_bad`` (None:
    unlimited), after passing that row to ``on_bad``.
    """
    name = os.fspath(path)
    if max_bad is not None and max_bad < 0:
        raise ValueError(f"max_bad must be >= 0 or None, got {max_bad}")
    lower = name.lower()
    gzipped = lower.endswith(".gz")
    suffix = os.path.splitext(lower[:-3] if gzipped else lower)[1]
    if suffix not in JSON_SUFFIXES and suffix not in CSV_DELIMITERS:
        known = ", ".join(sorted(JSON_SUFFIXES | CSV_DELIMITERS.keys()))
        raise CatalogError(f"{name}: unknown catalog format {suffix!r}; expected {known}, optionally .gz")
    return _read(name, suffix, gzipped, limits, max_bad, on_bad)


def load_catalog(
    path: str | os.PathLike[str], *, limits: Limits = Limits(), max_bad: int | None = None
) -> CatalogReport:
    """Read a whole catalog into a :class:`CatalogReport`; raises as :func:`read_catalog`."""
    bad: list[BadRow] = []
    products = list(read_catalog(path, limits=limits, max_bad=max_bad, on_bad=bad.append))
    return CatalogReport(products=products, bad=bad, rows=len(products) + len(bad))


def read_ids(path: str | os.PathLike[str]) -> list[str]:
    """Ids from a delete list: one per line, stripped; blank and ``#`` lines ignored.

    Raises CatalogError if the file cannot be read or is not UTF-8.
    """
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8-sig") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise CatalogError(f"{name}: cannot read id list: {err}") from err
    return [s for s in (line.strip() for line in lines) if s and not s.startswith("#")]


def _read(
    name: str, suffix: str, gzipped: bool, limits: Limits, max_bad: int | None, on_bad: Callable[[BadRow], None] | None
) -> Iterator[Product]:
    seen: dict[str, int] = {}  # id -> line of the kept row
    first: list[BadRow] = []
    count = 0
    try:
        fh: IO[bytes] = gzip.open(name, "rb") if gzipped else open(name, "rb")
    except OSError as err:
        raise CatalogError(f"{name}: cannot open: {err}") from err
    with fh:
        lines = _lines(name, fh, gzipped)
        records: Iterator[tuple[int, bytes | None]]
        if suffix in JSON_SUFFIXES:
            records, parse = ((n, raw) for n, raw in lines if raw.strip()), _jsonl_record
        else:
            delimiter = CSV_DELIMITERS[suffix]
            records = _csv_split(lines, delimiter.encode())
            header = _csv_header(name, next(records, None), delimiter)
            parse = functools.partial(_csv_record, header, delimiter)
        for line, data in records:
            try:
                product = _product(parse(data), limits)
                if product.id in seen:
                    raise _Bad(f"id: duplicate {_show(product.id)}, first seen on line {seen[product.id]}")
            except _Bad as bad:
                count += 1
                report = BadRow(name, line, str(bad))
                if len(first) < REPORTED_IN_MESSAGE:
                    first.append(report)
                if on_bad is not None:
                    on_bad(report)
                if max_bad is not None and count > max_bad:
                    raise TooManyBadRows(name, count, max_bad, tuple(first)) from None
                continue
            seen[product.id] = line
            yield product


def _lines(name: str, fh: IO[bytes], gzipped: bool) -> Iterator[tuple[int, bytes]]:
    """Number the physical lines; a read failure is a file-level error naming the line reached."""
    lineno = 0
    try:
        for raw in fh:
            lineno += 1
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            yield lineno, raw
    except (OSError, EOFError, zlib.error) as err:
        what = "corrupt or truncated gzip data" if gzipped else "read failed"
        raise CatalogError(f"{name}: {what} after line {lineno}: {err}") from err


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start].split(b"\n")  # in a multi-line CSV record, say which line
        where = f"line {len(before)} of the record, " if len(before) > 1 else ""
        raise _Bad(f"invalid UTF-8: byte 0x{data[err.start]:02x} at {where}column {len(before[-1]) + 1}") from None


def _jsonl_record(data: bytes | None) -> dict[str, Any]:
    obj = _json(_decode(data or b"").rstrip("\r\n"), "")
    if not isinstance(obj, dict):
        raise _Bad(f"not a JSON object, got {_kind(obj)}")
    return obj


def _json(text: str, prefix: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _Bad(f"{prefix}invalid JSON: {err.msg} at column {err.colno}") from None
    except ValueError as err:  # an integer with too many digits to convert
        raise _Bad(f"{prefix}invalid JSON: {err}") from None


def _csv_header(name: str, record: tuple[int, bytes | None] | None, delimiter: str) -> list[str]:
    if record is None:
        raise CatalogError(f"{name}: empty CSV file, expected a header row with id and title")
    line, data = record
    try:
        header = [f.strip() for f in _csv_fields(data, delimiter)]
    except _Bad as bad:
        raise CatalogError(f"{name}:{line}: unreadable CSV header: {bad}") from None
    missing = [col for col in ("id", "title") if col not in header]
    if missing:
        raise CatalogError(f"{name}:{line}: CSV header lacks column(s) {', '.join(missing)}; got {header}")
    if len(set(header)) != len(header):
        raise CatalogError(f"{name}:{line}: CSV header repeats a column: {header}")
    return header


def _csv_fields(data: bytes | None, delimiter: str) -> list[str]:
    if data is None:
        raise _Bad("malformed CSV: quoted field not closed before end of file")
    text = _decode(data).rstrip("\r\n")
    try:
        return next(csv.reader([text], delimiter=delimiter, strict=True))
    except csv.Error as err:
        raise _Bad(f"malformed CSV: {err}") from None


def _csv_record(header: list[str], delimiter: str, data: bytes | None) -> dict[str, Any]:
    """Turn one CSV record into the JSON types :func:`_product` validates."""
    fields = _csv_fields(data, delimiter)
    if len(fields) != len(header):
        raise _Bad(f"malformed CSV: expected {len(header)} columns, got {len(fields)}")
    row = dict(zip(header, fields))
    record: dict[str, Any] = {k: row[k] for k in ("id", "title", "description", "category", "brand") if k in row}
    price = row.get("price", "").strip()
    if price:
        try:
            if "_" in price:  # float() accepts "1_000"; a catalog should not
                raise ValueError(price)
            record["price"] = float(price)
        except ValueError:
            raise _Bad(f"price: must be a number, got {_show(price)}") from None
    stock = row.get("in_stock", "").strip()
    if stock:
        if stock.lower() not in _CSV_BOOLS:
            raise _Bad(f"in_stock: must be one of true/false/1/0/yes/no, got {_show(stock)}")
        record["in_stock"] = _CSV_BOOLS[stock.lower()]
    attrs = row.get("attrs", "").strip()
    if attrs:
        record["attrs"] = _json(attrs, "attrs: ")
    return record


def _csv_split(lines: Iterable[tuple[int, bytes]], delimiter: bytes) -> Iterator[tuple[int, bytes | None]]:
    """Group physical lines into records ``(first line, bytes)``; a quoted field may span lines.

    A record whose quoted field is still open at end of file comes as ``(first line, None)``.
    Splitting bytes before decoding is safe: every byte of a multi-byte UTF-8 character is >= 0x80.
    """
    parts: list[bytes] = []
    start = 0
    in_quotes = False
    for lineno, raw in lines:
        if not parts:
            if not raw.rstrip(b"\r\n"):
                continue  # blank lines are not rows
            start = lineno
        parts.append(raw)
        if in_quotes or _QUOTE in raw:
            in_quotes = _ends_quoted(raw, delimiter, in_quotes)
        if not in_quotes:
            yield start, b"".join(parts)
            parts = []
    if parts:
        yield start, None


def _ends_quoted(raw: bytes, delimiter: bytes, in_quotes: bool) -> bool:
    """Whether a quoted field is still open at the end of ``raw``, with the csv module's rules:
    a quote opens a field only at its start, and ``""`` inside quotes is a literal quote."""
    i, n = 0, len(raw)
    at_field_start = not in_quotes
    while i < n:
        if in_quotes:
            j = raw.find(b'"', i)
            if j < 0:
                return True
            if raw[j + 1 : j + 2] == b'"':
                i = j + 2
                continue
            in_quotes, at_field_start, i = False, False, j + 1
        elif at_field_start and raw[i] == _QUOTE:
            in_quotes, i = True, i + 1
        else:
            j = raw.find(delimiter, i)
            if j < 0:
                return False
            at_field_start, i = True, j + 1
    return in_quotes


def _product(record: dict[str, Any], limits: Limits) -> Product:
    ident = record.get("id")
    if isinstance(ident, int) and not isinstance(ident, bool):
        ident = str(ident)  # numeric ids are common in exports; ids are compared as text
    elif ident is not None and not isinstance(ident, str):
        raise _Bad(f"id: must be a string or integer, got {_kind(ident)}")
    return Product(
        id=_text("id", ident, limits.max_id_bytes, required=True),
        title=_text("title", record.get("title"), limits.max_title_bytes, required=True),
        description=_text("description", record.get("description"), limits.max_description_bytes),
        category=_text("category", record.get("category"), limits.max_field_bytes),
        brand=_text("brand", record.get("brand"), limits.max_field_bytes),
        price=_price(record.get("price")),
        in_stock=_typed("in_stock", record.get("in_stock"), bool, True, "a boolean"),
        attrs=_typed("attrs", record.get("attrs"), dict, {}, "an object"),
    )


def _text(name: str, value: Any, max_bytes: int, *, required: bool = False) -> str:
    """A text field; required ones are stripped and must not be empty. Null means absent."""
    if value is None:
        if required:
            raise _Bad(f"{name}: missing")
        return ""
    if not isinstance(value, str):
        raise _Bad(f"{name}: must be a string, got {_kind(value)}")
    if required:
        value = value.strip()
        if not value:
            raise _Bad(f"{name}: empty")
    if value.isascii():  # O(1) in CPython; spares most rows an encode
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # a JSON "\ud800" escape decodes to a lone surrogate
            raise _Bad(f"{name}: contains a lone surrogate, not valid Unicode") from None
    if size > max_bytes:
        raise _Bad(f"{name}: too long, {size} bytes > {max_bytes}")
    return value


def _price(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(f"price: must be a number, got {_kind(value)}")
    try:
        price = float(value)
    except OverflowError:  # a JSON integer beyond float range
        price = math.inf
    if not (math.isfinite(price) and price >= 0):
        raise _Bad(f"price: must be a finite number >= 0, got {_show(value)}")
    return price


def _typed(name: str, value: Any, kind: type, default: Any, wanted: str) -> Any:
    if value is None:
        return default
    if not isinstance(value, kind):
        raise _Bad(f"{name}: must be {wanted}, got {_kind(value)}")
    return value


_KINDS = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string", list: "array"}


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for reasons a catalog author understands."""
    return _KINDS.get(type(value), "object")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
