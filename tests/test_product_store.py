"""The SQLite product store: round trips, filters against a pure-Python model, errors."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from search.errors import InvalidArgument, SnapshotError
from search.filters import Filters, split_category
from search.product import Product
from search.product_store import ProductStore, write_product_store

PRODUCTS = [
    Product(
        id="p0",
        title="Red running shoes",
        description="Light, fast.",
        category="Footwear > Shoes > Sports Shoes",
        brand="Nike",
        price=59.99,
        in_stock=True,
        attrs={"colour": "red", "sizes": [7, 8, 9], "nested": {"a": None}},
    ),
    Product(id="p1", title="Blue sneakers", category="footwear > shoes > Casual Shoes", brand=" nike ", price=40.0),
    Product(id="p2", title="Sandals", category="Footwear > Sandals", brand="Bata", price=None, in_stock=False),
    Product(id="p3", title="Ünïcödé 鞋子 👟", description="é\u0301 — ß", category="Accessories", brand="STRASSE", price=0.0),
    Product(id="p4", title="Loafers", category="Footwear > Shoes", brand="Gucci", price=400.0, in_stock=False),
    Product(id="p5", title="Wildcards", category="100% > a_b > c", brand="50%_off", price=10.0),
    Product(id="p6", title="Uncategorized", category="", brand="", price=5.0),
    Product(id="p7", title="Sibling", category="Footwear > Shoes !x", brand="Puma", price=20.0),
]


def matches(product: Product, filters: Filters) -> bool:
    """The reference semantics of Filters, in plain Python."""
    segments = split_category(product.category)
    prefix = filters.category_segments
    if prefix and segments[: len(prefix)] != prefix:
        return False
    if filters.brands and product.brand.strip().casefold() not in filters.brand_keys:
        return False
    if filters.price_min is not None and (product.price is None or product.price < filters.price_min):
        return False
    if filters.price_max is not None and (product.price is None or product.price > filters.price_max):
        return False
    return filters.in_stock is None or product.in_stock == filters.in_stock


def expected_rows(products: list[Product], filters: Filters) -> list[int]:
    return [i for i, p in enumerate(products) if matches(p, filters)]


@pytest.fixture
def store(tmp_path: Path):
    path = tmp_path / "products.sqlite"
    assert write_product_store(path, PRODUCTS) == len(PRODUCTS)
    with ProductStore.open(path) as opened:
        yield opened


def test_round_trip_keeps_every_field(store: ProductStore) -> None:
    assert len(store) == len(PRODUCTS)
    assert store.get_many(range(len(PRODUCTS))) == PRODUCTS
    assert store.all_product_ids() == [p.id for p in PRODUCTS]


def test_get_many_keeps_the_given_order_and_repeats(store: ProductStore) -> None:
    assert [p.id for p in store.get_many([5, 0, 3, 0])] == ["p5", "p0", "p3", "p0"]
    assert [p.id for p in store.get_many(np.array([2, 1], dtype=np.int64))] == ["p2", "p1"]
    assert store.get_many([]) == []


@pytest.mark.parametrize("bad", [[-1], [len(PRODUCTS)], [0, 99]], ids=["padding", "one-past-end", "mixed"])
def test_get_many_unknown_row_raises(store: ProductStore, bad: list[int]) -> None:
    with pytest.raises(SnapshotError, match="products.sqlite has no row ids"):
        store.get_many(bad)


def test_row_ids_for_leaves_unknown_ids_out(store: ProductStore) -> None:
    assert store.row_ids_for(["p3", "nope", "p0"]) == {"p3": 3, "p0": 0}
    assert store.row_ids_for([]) == {}


@pytest.mark.parametrize(
    ("filters", "rows"),
    [
        (Filters(), [0, 1, 2, 3, 4, 5, 6, 7]),
        (Filters(category_prefix="Footwear"), [0, 1, 2, 4, 7]),
        (Filters(category_prefix="  FOOTWEAR>shoes "), [0, 1, 4]),
        (Filters(category_prefix="Footwear > Shoes > Casual Shoes"), [1]),
        (Filters(category_prefix="Foot"), []),
        (Filters(category_prefix="Footwear > Sho"), []),
        (Filters(category_prefix="100%"), [5]),
        (Filters(category_prefix="100% > a_b"), [5]),
        (Filters(category_prefix="1%"), []),
        (Filters(category_prefix="100% > a%"), []),
        (Filters(category_prefix="100% > a_c"), []),
        (Filters(category_prefix="straße"), []),
        (Filters(brands=frozenset({"NIKE"})), [0, 1]),
        (Filters(brands=frozenset({"bata", "Gucci"})), [2, 4]),
        (Filters(brands=frozenset({"strasse"})), [3]),
        (Filters(brands=frozenset({"50%_off"})), [5]),
        (Filters(brands=frozenset({"50%"})), []),
        (Filters(price_min=40.0), [0, 1, 4]),
        (Filters(price_max=40.0), [1, 3, 5, 6, 7]),
        (Filters(price_min=0.0), [0, 1, 3, 4, 5, 6, 7]),
        (Filters(price_min=10.0, price_max=59.99), [0, 1, 5, 7]),
        (Filters(in_stock=False), [2, 4]),
        (Filters(in_stock=True), [0, 1, 3, 5, 6, 7]),
        (Filters(category_prefix="footwear", brands=frozenset({"nike", "gucci"}), price_max=100.0, in_stock=True), [0, 1]),
    ],
    ids=lambda v: repr(v) if isinstance(v, Filters) else None,
)
def test_matching_rows(store: ProductStore, filters: Filters, rows: list[int]) -> None:
    assert rows == expected_rows(PRODUCTS, filters)
    got = store.matching_rows(filters)
    assert got.dtype == np.int64
    assert got.tolist() == rows
    assert store.matching_rows(filters).tolist() == rows  # the cached answer too


def test_matching_rows_results_are_read_only(store: ProductStore) -> None:
    rows = store.matching_rows(Filters(brands=frozenset({"nike"})))
    with pytest.raises(ValueError):
        rows[0] = 5


def test_matching_rows_cache_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    write_product_store(path, PRODUCTS)
    with ProductStore.open(path, cache_entries=2) as store:
        for price in range(10):
            assert store.matching_rows(Filters(price_min=float(price))).tolist() == expected_rows(
                PRODUCTS, Filters(price_min=float(price))
            )
        assert len(store._cache) == 2
    with ProductStore.open(path, cache_bytes=8) as store:
        store.matching_rows(Filters())  # 64 bytes: never cached
        assert len(store._cache) == 0


_text = st.text(alphabet=st.sampled_from("aAbBß >%_ "), max_size=8)
_products = st.lists(
    st.builds(
        Product,
        id=st.just(""),
        title=st.text(max_size=5),
        category=st.lists(st.sampled_from(["Foot", "foot", "Footwear", "SHOES", "a%b", "a_b", "ß", "ss"]), max_size=3).map(
            " > ".join
        ),
        brand=st.sampled_from(["", "Nike", "nike ", "NIKE", "Bata", "ß", "SS", "a%"]),
        price=st.one_of(st.none(), st.sampled_from([0.0, 9.99, 10.0, 10.01, 500.0])),
        in_stock=st.booleans(),
        attrs=st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=3)), max_size=2),
    ),
    max_size=25,
)
_filters = st.builds(
    Filters,
    category_prefix=st.one_of(st.none(), st.sampled_from(["foot", "FOOTWEAR", "footwear > shoes", "a%", "A_B", "ss", "SHOES > x"])),
    brands=st.frozensets(st.sampled_from(["nike", "Bata", "ss", "ß", "A%", "other"]), max_size=2),
    price_min=st.one_of(st.none(), st.sampled_from([0.0, 10.0])),
    price_max=st.one_of(st.none(), st.sampled_from([10.0, 500.0])),
    in_stock=st.one_of(st.none(), st.booleans()),
)


@settings(max_examples=60, deadline=None)
@given(products=_products, filters=st.lists(_filters, min_size=1, max_size=5))
def test_matching_rows_equals_the_reference(tmp_path_factory, products: list[Product], filters: list[Filters]) -> None:
    products = [Product(**{**_fields(p), "id": f"id{i}"}) for i, p in enumerate(products)]
    path = tmp_path_factory.mktemp("store") / "p.sqlite"
    write_product_store(path, products)
    with ProductStore.open(path) as store:
        assert store.get_many(range(len(products))) == products
        for f in filters:
            assert store.matching_rows(f).tolist() == expected_rows(products, f), f


def _fields(p: Product) -> dict:
    return {name: getattr(p, name) for name in Product.__dataclass_fields__}


def test_concurrent_reads_from_threads(tmp_path: Path) -> None:
    products = [
        Product(id=f"p{i}", title=f"t{i}", category=f"C{i % 7} > S{i % 3}", brand=f"B{i % 5}", price=float(i % 50))
        for i in range(2000)
    ]
    path = tmp_path / "p.sqlite"
    write_product_store(path, products)
    filters = [Filters(category_prefix=f"c{i % 7}", brands=frozenset({f"b{i % 5}"}), price_max=float(i)) for i in range(40)]
    with ProductStore.open(path, cache_entries=0) as store:

        def work(i: int) -> tuple[list[str], list[int]]:
            rows = store.matching_rows(filters[i])
            return [p.id for p in store.get_many(rows[:20])], rows.tolist()

        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(work, range(40)))
    for f, (ids, rows) in zip(filters, results):
        assert rows == expected_rows(products, f)
        assert ids == [f"p{r}" for r in rows[:20]]


def test_open_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match=r"nowhere\.sqlite does not exist"):
        ProductStore.open(tmp_path / "nowhere.sqlite")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other-schema"])
def test_open_corrupt_file_names_it(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "bad.sqlite"
    if damage == "garbage":
        path.write_bytes(b"not a database at all" * 100)
    elif damage == "truncated":
        good = tmp_path / "good.sqlite"
        write_product_store(good, [Product(id=f"p{i}", title="x" * 200) for i in range(500)])
        path.write_bytes(good.read_bytes()[:10_000])
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
            conn.execute("INSERT INTO meta VALUES ('schema_version', '0')")
        conn.close()
    with pytest.raises(SnapshotError, match=r"bad\.sqlite"):
        ProductStore.open(path)


def test_write_refuses_an_existing_path(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        write_product_store(path, PRODUCTS)
    assert path.read_bytes() == b"keep me"


@pytest.mark.parametrize(
    "bad",
    [
        [Product(id="a", title="x"), Product(id="a", title="y")],
        [Product(id="a", title="x", price=float("nan"))],
        [Product(id="a", title="x", attrs={"when": object()})],
    ],
    ids=["duplicate-id", "nan-price", "unserializable-attrs"],
)
def test_write_rejects_bad_products_and_leaves_no_file(tmp_path: Path, bad: list[Product]) -> None:
    path = tmp_path / "p.sqlite"
    with pytest.raises(InvalidArgument, match=r"'a'|UNIQUE constraint failed: products\.product_id"):
        write_product_store(path, bad)
    assert not path.exists()


def test_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    assert write_product_store(path, []) == 0
    with ProductStore.open(path) as store:
        assert len(store) == 0
        assert store.matching_rows(Filters()).tolist() == []
        assert store.matching_rows(Filters(in_stock=True)).tolist() == []


def test_closed_store_raises_snapshot_error(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    write_product_store(path, PRODUCTS)
    store = ProductStore.open(path)
    store.close()
    with pytest.raises(SnapshotError, match=r"p\.sqlite"):
        store.get_many([0])
