"""indexer.catalog: every row of a catalog file is either a valid Product or a reported BadRow."""

from __future__ import annotations

import csv
import gzip
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.catalog import (
    BadRow,
    CatalogError,
    CatalogReport,
    Limits,
    TooManyBadRows,
    load_catalog,
    read_catalog,
    read_ids,
)
from search.product import Product

REAL_CATALOG = Path(__file__).resolve().parents[2] / "shared" / "data" / "myntra_fashion" / "products.jsonl.gz"

PRODUCTS = [
    Product(
        id="p1",
        title="Nike Men Blue Jersey",
        description='Blue, "ribbed" V-neck\nshort sleeves',
        category="Apparel > Topwear > Tshirts",
        brand="Nike",
        price=895.0,
        in_stock=True,
        attrs={"gender": "Men", "sizes": ["S", "M"], "nested": {"fit": "Regular"}},
    ),
    Product(id="p2", title="Sari à fleurs — 絹", brand="Fabindia", price=None, in_stock=False),
    Product(id="42", title="Tab\there", category="Accessories", price=0.0, attrs={"n": 1.5}),
]


def write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path``, gzip'd when the name ends in .gz."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    path.write_bytes(gzip.compress(raw) if path.name.endswith(".gz") else raw)
    return path


def jsonl(*rows: dict[str, Any] | bytes | str) -> bytes:
    """One line per row: dicts as JSON, bytes and str verbatim."""
    lines = [r if isinstance(r, bytes) else (r if isinstance(r, str) else json.dumps(r)).encode() for r in rows]
    return b"".join(line + b"\n" for line in lines)


def as_dict(p: Product) -> dict[str, Any]:
    return {
        "id": p.id,
        "title": p.title,
        "description": p.description,
        "category": p.category,
        "brand": p.brand,
        "price": p.price,
        "in_stock": p.in_stock,
        "attrs": dict(p.attrs),
    }


def delimited(products: list[Product], delimiter: str) -> str:
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\n")
    writer.writerow(["id", "title", "description", "category", "brand", "price", "in_stock", "attrs"])
    for p in products:
        price = "" if p.price is None else repr(p.price)
        stock = "true" if p.in_stock else "false"
        writer.writerow([p.id, p.title, p.description, p.category, p.brand, price, stock, json.dumps(dict(p.attrs))])
    return out.getvalue()


# --- round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["c.jsonl", "c.jsonl.gz", "c.json", "c.ndjson.gz", "c.csv", "c.csv.gz", "c.tsv", "c.tsv.gz", "C.JSONL"],
)
def test_round_trip(tmp_path: Path, name: str) -> None:
    if ".csv" in name or ".tsv" in name:
        text = delimited(PRODUCTS, "," if ".csv" in name else "\t")
    else:
        text = jsonl(*(as_dict(p) for p in PRODUCTS)).decode()
    path = write(tmp_path / name, text)
    report = load_catalog(path)
    assert report == CatalogReport(products=PRODUCTS, bad=[], rows=3)
    assert list(read_catalog(str(path))) == PRODUCTS


def test_jsonl_int_id_defaults_and_ignored_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "c.jsonl", jsonl({"id": 7, "title": "  Cap ", "colour": "red", "price": 3}))
    assert load_catalog(path).products == [Product(id="7", title="Cap", price=3.0)]


def test_csv_optional_columns_and_extra_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "note,title,id\nx,Cap,7\n")
    assert load_catalog(path).products == [Product(id="7", title="Cap")]


@pytest.mark.parametrize("name", ["c.jsonl", "c.csv"])
def test_utf8_bom_is_not_part_of_the_first_row(tmp_path: Path, name: str) -> None:
    body = "id,title\na,A\n" if name.endswith(".csv") else '{"id": "a", "title": "A"}\n'
    path = write(tmp_path / name, b"\xef\xbb\xbf" + body.encode())
    assert load_catalog(path).products == [Product(id="a", title="A")]


@pytest.mark.parametrize("value,expected", [("TRUE", True), ("Yes", True), ("1", True), ("no", False), ("0", False)])
def test_csv_in_stock_spellings(tmp_path: Path, value: str, expected: bool) -> None:
    path = write(tmp_path / "c.csv", f"id,title,in_stock\na,A, {value} \n")
    assert load_catalog(path).products[0].in_stock is expected


# --- bad rows -----------------------------------------------------------------------------------


def json_error(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as err:
        return f"invalid JSON: {err.msg} at column {err.colno}"
    raise AssertionError(f"{text!r} is valid JSON")


JSONL_BAD = {
    "id-missing": ({"title": "T"}, "id: missing"),
    "id-null": ({"id": None, "title": "T"}, "id: missing"),
    "id-empty": ({"id": "", "title": "T"}, "id: empty"),
    "id-blank": ({"id": " \t", "title": "T"}, "id: empty"),
    "id-float": ({"id": 1.5, "title": "T"}, "id: must be a string or integer, got number"),
    "id-bool": ({"id": True, "title": "T"}, "id: must be a string or integer, got boolean"),
    "id-array": ({"id": ["x"], "title": "T"}, "id: must be a string or integer, got array"),
    "id-too-long": ({"id": "i" * 1025, "title": "T"}, "id: too long, 1025 bytes > 1024"),
    "id-duplicate": ({"id": "a", "title": "again"}, "id: duplicate 'a', first seen on line 1"),
    "id-duplicate-int": ({"id": 7, "title": "again"}, "id: duplicate '7', first seen on line 2"),
    "title-missing": ({"id": "x"}, "title: missing"),
    "title-null": ({"id": "x", "title": None}, "title: missing"),
    "title-empty": ({"id": "x", "title": ""}, "title: empty"),
    "title-blank": ({"id": "x", "title": "  \n "}, "title: empty"),
    "title-number": ({"id": "x", "title": 5}, "title: must be a string, got number"),
    "title-object": ({"id": "x", "title": {}}, "title: must be a string, got object"),
    "title-too-long": ({"id": "x", "title": "t" * 4097}, "title: too long, 4097 bytes > 4096"),
    "title-surrogate": ('{"id": "x", "title": "a\\ud800"}', "title: contains a lone surrogate, not valid Unicode"),
    "description-number": ({"id": "x", "title": "T", "description": 1}, "description: must be a string, got number"),
    "description-too-long": (
        {"id": "x", "title": "T", "description": "d" * 32769},
        "description: too long, 32769 bytes > 32768",
    ),
    "category-array": ({"id": "x", "title": "T", "category": ["A"]}, "category: must be a string, got array"),
    "category-too-long-multibyte": (
        {"id": "x", "title": "T", "category": "é" * 2049},
        "category: too long, 4098 bytes > 4096",
    ),
    "brand-bool": ({"id": "x", "title": "T", "brand": False}, "brand: must be a string, got boolean"),
    "brand-too-long": ({"id": "x", "title": "T", "brand": "b" * 4097}, "brand: too long, 4097 bytes > 4096"),
    "price-string": ({"id": "x", "title": "T", "price": "12"}, "price: must be a number, got string"),
    "price-bool": ({"id": "x", "title": "T", "price": True}, "price: must be a number, got boolean"),
    "price-negative": ({"id": "x", "title": "T", "price": -3}, "price: must be a finite number >= 0, got -3"),
    "price-nan": ('{"id": "x", "title": "T", "price": NaN}', "price: must be a finite number >= 0, got nan"),
    "price-infinity": ('{"id": "x", "title": "T", "price": Infinity}', "price: must be a finite number >= 0, got inf"),
    "price-overflow": ('{"id": "x", "title": "T", "price": 1e400}', "price: must be a finite number >= 0, got inf"),
    "price-huge-int": (
        '{"id": "x", "title": "T", "price": 1' + "0" * 400 + "}",
        "price: must be a finite number >= 0, got 1000000000000000000000000000000000000...",
    ),
    "in_stock-number": ({"id": "x", "title": "T", "in_stock": 1}, "in_stock: must be a boolean, got number"),
    "in_stock-string": ({"id": "x", "title": "T", "in_stock": "yes"}, "in_stock: must be a boolean, got string"),
    "attrs-array": ({"id": "x", "title": "T", "attrs": []}, "attrs: must be an object, got array"),
    "attrs-string": ({"id": "x", "title": "T", "attrs": "{}"}, "attrs: must be an object, got string"),
    "json-invalid": ('{"id": "x", ', json_error('{"id": "x", ')),
    "json-trailing-garbage": ('{"id": "x", "title": "T"} x', json_error('{"id": "x", "title": "T"} x')),
    "json-array": ("[1, 2]", "not a JSON object, got array"),
    "json-string": ('"x"', "not a JSON object, got string"),
    "json-null": ("null", "not a JSON object, got null"),
    "utf8-invalid": (b'{"id": "x", "title": "\xff"}', "invalid UTF-8: byte 0xff at column 23"),
    "utf8-truncated-sequence": (b'{"id": "x", "title": "\xc3"}', "invalid UTF-8: byte 0xc3 at column 23"),
    "utf8-encoded-surrogate": (b'{"id": "x", "title": "\xed\xa0\x80"}', "invalid UTF-8: byte 0xed at column 23"),
}


@pytest.mark.parametrize("row,reason", list(JSONL_BAD.values()), ids=list(JSONL_BAD))
def test_jsonl_bad_row(tmp_path: Path, row: dict[str, Any] | bytes | str, reason: str) -> None:
    # Line 1 and 2 are valid, line 3 is blank (not a row), line 4 is the bad one, line 5 valid again.
    rows = ({"id": "a", "title": "A"}, {"id": 7, "title": "B"}, "", row, {"id": "z", "title": "Z"})
    path = write(tmp_path / "products.jsonl", jsonl(*rows))
    seen: list[BadRow] = []
    products = list(read_catalog(path, on_bad=seen.append))
    assert [str(b) for b in seen] == [f"{path}:4: {reason}"]
    assert [p.id for p in products] == ["a", "7", "z"]
    assert products[0].title == "A"  # a duplicate never replaces the first occurrence


CSV_HEADER = "id,title,price,in_stock,attrs,description"

CSV_BAD = {
    "columns-too-few": ("x,T,1", "malformed CSV: expected 6 columns, got 3"),
    "columns-too-many": ("x,T,1,,,,", "malformed CSV: expected 6 columns, got 7"),
    "quote-then-text": ('x,"T"T,1,,,', "malformed CSV: ',' expected after '\"'"),
    "utf8-invalid": (b"x,T\xfe,1,,,", "invalid UTF-8: byte 0xfe at column 4"),
    "id-empty": (",T,1,,,", "id: empty"),
    "id-blank": ("  ,T,1,,,", "id: empty"),
    "id-duplicate": ("a,again,1,,,", "id: duplicate 'a', first seen on line 2"),
    "title-empty": ("x,,1,,,", "title: empty"),
    "price-text": ("x,T,abc,,,", "price: must be a number, got 'abc'"),
    "price-underscore": ("x,T,1_000,,,", "price: must be a number, got '1_000'"),
    "price-negative": ("x,T,-3,,,", "price: must be a finite number >= 0, got -3.0"),
    "price-nan": ("x,T,nan,,,", "price: must be a finite number >= 0, got nan"),
    "price-infinity": ("x,T,Infinity,,,", "price: must be a finite number >= 0, got inf"),
    "in_stock-other": ("x,T,1,maybe,,", "in_stock: must be one of true/false/1/0/yes/no, got 'maybe'"),
    "attrs-invalid-json": ("x,T,1,,{bad,", "attrs: " + json_error("{bad")),
    "attrs-array": ('x,T,1,,"[1, 2]",', "attrs: must be an object, got array"),
    "description-too-long": ("x,T,1,,," + "d" * 32769, "description: too long, 32769 bytes > 32768"),
}


@pytest.mark.parametrize("row,reason", list(CSV_BAD.values()), ids=list(CSV_BAD))
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_csv_bad_row(tmp_path: Path, row: str | bytes, reason: str, gz: bool) -> None:
    raw = row if isinstance(row, bytes) else row.encode()
    data = f"{CSV_HEADER}\na,A,1,,,\n".encode() + raw + b"\nz,Z,,,,\n"
    path = write(tmp_path / ("products.csv.gz" if gz else "products.csv"), data)
    report = load_catalog(path)
    assert report.bad == [BadRow(str(path), 3, reason)]
    assert [p.id for p in report.products] == ["a", "z"]
    assert report.rows == 3


def test_tsv_quotes_only_open_at_field_start(tmp_path: Path) -> None:
    path = write(tmp_path / "p.tsv", 'id\ttitle\tprice\n1\t14" laptop\t3\n2\t"quoted\ttab"\t\n3\tshort\n4\tok\t1\n')
    report = load_catalog(path)
    assert [(p.id, p.title) for p in report.products] == [("1", '14" laptop'), ("2", "quoted\ttab"), ("4", "ok")]
    assert [str(b) for b in report.bad] == [f"{path}:4: malformed CSV: expected 3 columns, got 2"]


def test_csv_multiline_records_report_their_first_line(tmp_path: Path) -> None:
    data = (
        b"id,title,description\n"  # 1
        b'a,A,"one\n'  # 2
        b"two\n"  # 3
        b'""three"""\n'  # 4
        b'"b\n'  # 5: a quoted id spanning two lines, malformed after its closing quote
        b'"x,B,desc\n'  # 6
        b"\n"  # 7: blank, not a row
        b'c,"C\n'  # 8
        b"\n"  # 9: a blank line inside a quoted field
        b'",-,extra\n'  # 10
        b"d,D,ok\n"  # 11
        b'e,"\xff\n'  # 12
        b'\xc3\xa9",x\n'  # 13
        b'f,F,"never closed\n'  # 14
        b"g,G,swallowed\n"  # 15
    )
    path = write(tmp_path / "m.csv", data)
    report = load_catalog(path)
    assert [(p.id, p.description) for p in report.products] == [("a", 'one\ntwo\n"three"'), ("d", "ok")]
    assert [str(b) for b in report.bad] == [
        f"{path}:5: malformed CSV: ',' expected after '\"'",
        f"{path}:8: malformed CSV: expected 3 columns, got 4",
        f"{path}:12: invalid UTF-8: byte 0xff at column 4",
        f"{path}:14: malformed CSV: quoted field not closed before end of file",
    ]
    assert report.rows == 6


def test_invalid_utf8_in_a_later_line_of_a_csv_record_names_it(tmp_path: Path) -> None:
    path = write(tmp_path / "m.csv", b'id,title\na,"A\nok\nb\xffad"\nz,Z\n')
    report = load_catalog(path)
    assert [str(b) for b in report.bad] == [f"{path}:2: invalid UTF-8: byte 0xff at line 3 of the record, column 2"]
    assert [p.id for p in report.products] == ["z"]


def test_invalid_utf8_mid_file_rest_still_parses(tmp_path: Path) -> None:
    rows: list[dict[str, Any] | bytes] = [{"id": f"p{i}", "title": f"T{i} ✓"} for i in range(1000)]
    rows[500] = b'{"id": "p500", "title": "caf\xe9"}'  # Latin-1 é
    path = write(tmp_path / "big.jsonl.gz", jsonl(*rows))
    report = load_catalog(path)
    assert [str(b) for b in report.bad] == [f"{path}:501: invalid UTF-8: byte 0xe9 at column 29"]
    assert len(report.products) == 999 and report.products[-1] == Product(id="p999", title="T999 ✓")


def test_duplicate_keeps_first_valid_occurrence(tmp_path: Path) -> None:
    rows = [
        {"id": "a", "title": "bad price", "price": -1},  # invalid: does not claim the id
        {"id": "a", "title": "first valid"},
        {"id": " a ", "title": "same id once stripped"},
        {"id": "a", "title": "third"},
    ]
    path = write(tmp_path / "d.jsonl", jsonl(*rows))
    report = load_catalog(path)
    assert report.products == [Product(id="a", title="first valid")]
    assert [(b.line, b.reason) for b in report.bad] == [
        (1, "price: must be a finite number >= 0, got -1"),
        (3, "id: duplicate 'a', first seen on line 2"),
        (4, "id: duplicate 'a', first seen on line 2"),
    ]


def test_limits_are_configurable_and_validated(tmp_path: Path) -> None:
    path = write(tmp_path / "l.jsonl", jsonl({"id": "a", "title": "short"}, {"id": "b", "title": "longer"}))
    report = load_catalog(path, limits=Limits(max_title_bytes=5))
    assert [p.id for p in report.products] == ["a"]
    assert [b.reason for b in report.bad] == ["title: too long, 6 bytes > 5"]
    for bad in ({"max_id_bytes": 0}, {"max_description_bytes": -1}, {"max_field_bytes": True}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            Limits(**bad)


# --- max_bad ------------------------------------------------------------------------------------


def three_bad(tmp_path: Path) -> Path:
    return write(
        tmp_path / "b.jsonl",
        jsonl({"id": "a", "title": "A"}, "{", {"id": "b"}, {"title": "c"}, {"id": "d", "title": "D"}),
    )


def test_max_bad_not_exceeded(tmp_path: Path) -> None:
    report = load_catalog(three_bad(tmp_path), max_bad=3)
    assert ([p.id for p in report.products], len(report.bad), report.rows) == (["a", "d"], 3, 5)


def test_max_bad_exceeded_raises_at_once(tmp_path: Path) -> None:
    path = three_bad(tmp_path)
    seen: list[BadRow] = []
    yielded: list[str] = []
    with pytest.raises(TooManyBadRows) as info:
        for product in read_catalog(path, max_bad=2, on_bad=seen.append):
            yielded.append(product.id)
    assert yielded == ["a"]  # raised on line 4, before row "d" on line 5
    assert [b.line for b in seen] == [2, 3, 4]
    err = info.value
    assert isinstance(err, CatalogError)
    assert (err.count, err.max_bad, err.first) == (3, 2, tuple(seen))
    assert f"{path}: 3 bad rows exceed max_bad=2" in str(err)
    assert f"{path}:3: title: missing" in str(err)


def test_max_bad_zero_on_clean_file_and_negative_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "ok.jsonl", jsonl({"id": "a", "title": "A"}))
    assert len(load_catalog(path, max_bad=0).products) == 1
    with pytest.raises(TooManyBadRows, match="1 bad rows exceed max_bad=0"):
        load_catalog(three_bad(tmp_path), max_bad=0)
    with pytest.raises(ValueError, match="max_bad"):
        read_catalog(path, max_bad=-1)


# --- file-level errors --------------------------------------------------------------------------


def test_truncated_gzip_raises_naming_path_and_line(tmp_path: Path) -> None:
    rows = [{"id": f"p{i}", "title": f"product number {i}", "description": f"{i}" * 40} for i in range(5000)]
    full = gzip.compress(jsonl(*rows))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    yielded: list[Product] = []
    with pytest.raises(CatalogError, match=r"corrupt or truncated gzip data after line \d+") as info:
        yielded.extend(read_catalog(path))
    assert str(path) in str(info.value)
    assert 0 < len(yielded) < 5000
    assert f"after line {len(yielded)}:" in str(info.value)  # every line read was a valid row


@pytest.mark.parametrize(
    "name,data,match",
    [
        ("not-gzip.jsonl.gz", b'{"id": "a", "title": "A"}\n', "corrupt or truncated gzip data after line 0"),
        ("corrupt.csv.gz", gzip.compress(b"id,title\n" * 100)[:12] + b"\x00" * 50, "corrupt or truncated gzip"),
        ("no-title.csv", b"id,name\na,A\n", r"no-title.csv:1: CSV header lacks column\(s\) title"),
        ("blank-then-header.tsv", b"\n\nname\tx\n", r"blank-then-header.tsv:3: CSV header lacks column\(s\) id, title"),
        ("repeated.csv", b"id,title,id\n", "CSV header repeats a column"),
        ("empty.csv", b"", "empty CSV file"),
        ("bad-header.csv", b"id,t\xffitle\n", "unreadable CSV header: invalid UTF-8"),
    ],
)
def test_file_level_errors_raise_catalog_error(tmp_path: Path, name: str, data: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(CatalogError, match=match) as info:
        load_catalog(path)
    assert str(path) in str(info.value)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    for name in ("c.txt", "c.xml.gz", "c.gz", "jsonl"):
        with pytest.raises(CatalogError, match="unknown catalog format"):
            read_catalog(tmp_path / name)
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(CatalogError, match=f"{missing}: cannot open"):
        load_catalog(missing)


# --- read_ids -----------------------------------------------------------------------------------


def test_read_ids(tmp_path: Path) -> None:
    path = write(tmp_path / "delete.txt", "\ufeff# deletions\n  a1 \n\n\tb2\n# c3\n   \n42\r\n")
    assert read_ids(path) == ["a1", "b2", "42"]
    assert read_ids(write(tmp_path / "empty.txt", "")) == []
    with pytest.raises(CatalogError, match="nope.txt"):
        read_ids(tmp_path / "nope.txt")
    with pytest.raises(CatalogError, match="latin.txt"):
        read_ids(write(tmp_path / "latin.txt", b"caf\xe9\n"))


def test_bad_row_str() -> None:
    assert str(BadRow("products.jsonl", 17, "price: must be a finite number >= 0, got -3")) == (
        "products.jsonl:17: price: must be a finite number >= 0, got -3"
    )


# --- property: every row is accounted for -------------------------------------------------------

MISSING = object()
WRONG: dict[str, list[Any]] = {
    "id": [MISSING, None, "", "   ", 1.5, True, [], {}, "x" * 1025],
    "title": [MISSING, None, "", " \t", 5, [], {}, False],
    "description": [5, [], {}, True],
    "category": [1.0, ["A"], {}, False],
    "brand": [0, [], {"b": 1}, True],
    "price": [-1, -0.5, "12", True, [], {}, float("nan"), float("inf"), float("-inf")],
    "in_stock": [1, 0, "yes", "true", [], {}],
    "attrs": [[], "x", 1, True],
}
GARBAGE = [b"{", b"[1, 2]", b'"s"', b"null", b"12", b"\xff\xfe{}", b'{"id": "s", "title": "\\udc80"}', b"{}"]

texts = st.text(max_size=20)
valid_rows = st.fixed_dictionaries(
    {
        "id": st.one_of(st.sampled_from(["a", "b", " c ", "ü"]), st.integers(0, 3)),
        "title": st.text(min_size=1, max_size=20).filter(str.strip),
    },
    optional={
        "description": texts,
        "category": texts,
        "brand": texts,
        "price": st.one_of(st.none(), st.floats(0, 1e9), st.integers(0, 10**6)),
        "in_stock": st.one_of(st.none(), st.booleans()),
        "attrs": st.one_of(st.none(), st.dictionaries(texts, st.integers() | texts, max_size=3)),
        "unknown": st.integers(),
    },
)


@st.composite
def lines(draw: st.DrawFn) -> tuple[str, Any]:
    """One line: ("valid", row), ("bad", row with one wrong field), ("garbage", bytes) or ("blank", bytes)."""
    kind = draw(st.sampled_from(["valid", "valid", "bad", "garbage", "blank"]))
    if kind == "garbage":
        return kind, draw(st.sampled_from(GARBAGE))
    if kind == "blank":
        return kind, draw(st.sampled_from([b"", b"  ", b"\t\r"]))
    row = draw(valid_rows)
    if kind == "bad":
        field = draw(st.sampled_from(sorted(WRONG)))
        value = draw(st.sampled_from(WRONG[field]))
        if value is MISSING:
            row.pop(field, None)
        else:
            row[field] = value
    return kind, row


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(lines(), max_size=30),
    ascii_only=st.booleans(),
    gz=st.booleans(),
    max_bad=st.one_of(st.none(), st.integers(0, 10)),
)
def test_every_row_is_accounted_for(
    tmp_path: Path, items: list[tuple[str, Any]], ascii_only: bool, gz: bool, max_bad: int | None
) -> None:
    encoded = [v if isinstance(v, bytes) else json.dumps(v, ensure_ascii=ascii_only).encode() for _, v in items]
    path = write(tmp_path / ("h.jsonl.gz" if gz else "h.jsonl"), b"\n".join(encoded))

    # The oracle: a valid row is kept unless its id was kept before; everything else is bad.
    kept: list[str] = []
    bad_lines: list[int] = []
    for lineno, (kind, value) in enumerate(items, start=1):
        if kind == "blank":
            continue
        key = str(value["id"]).strip() if kind == "valid" else None
        if key is not None and key not in kept:
            kept.append(key)
        else:
            bad_lines.append(lineno)

    if max_bad is not None and len(bad_lines) > max_bad:
        with pytest.raises(TooManyBadRows) as info:
            load_catalog(path, max_bad=max_bad)
        assert info.value.count == max_bad + 1
        assert [b.line for b in info.value.first] == bad_lines[: min(max_bad + 1, 5)]
        return
    report = load_catalog(path, max_bad=max_bad)
    assert report.rows == sum(kind != "blank" for kind, _ in items) == len(report.products) + len(report.bad)
    assert [p.id for p in report.products] == kept
    assert [b.line for b in report.bad] == bad_lines
    assert all(b.reason for b in report.bad)


# --- the real catalog ---------------------------------------------------------------------------


@pytest.mark.slow
def test_real_myntra_catalog() -> None:
    if not REAL_CATALOG.exists():
        pytest.skip(f"{REAL_CATALOG} is absent")
    started = time.perf_counter()
    report = load_catalog(REAL_CATALOG)
    elapsed = time.perf_counter() - started
    assert (len(report.products), len(report.bad), report.rows) == (44_432, 0, 44_432)
    assert sum(p.price is None for p in report.products) == 11
    assert all(p.in_stock for p in report.products)
    assert len({p.id for p in report.products}) == 44_432
    print(f"parsed {REAL_CATALOG.name} in {elapsed:.2f}s")
