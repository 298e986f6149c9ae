"""The snapshot's product store: a SQLite file from FAISS row id to Product.

This module owns the schema on both sides: ``write_product_store`` creates the
file at index-build time, ``ProductStore`` reads it at serve time. Row ids are
contiguous (0..n-1) and equal the FAISS ids of the snapshot's vector index.

Filter columns are stored pre-normalized so every filter is an indexed SQL
predicate with the exact semantics of ``search.filters.Filters``:

- ``category_key``: the category path split, stripped and case-folded like
  ``split_category``, joined with ``" > "``. A prefix filter ``p`` is one
  index range scan over ``[p, p + " >!")`` keeping ``p`` itself and the keys
  from ``p + " > "`` on: exactly the keys whose leading segments are ``p``
  (``"!"`` is the byte after the space). Unlike LIKE, a range has no
  wildcards to escape and no ASCII-only case folding.
- ``brand_key``: the brand stripped and case-folded, like ``Filters.brand_keys``.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from search.errors import InvalidArgument, SnapshotError
from search.filters import Filters, split_category
from search.product import CATEGORY_SEPARATOR, Product

SCHEMA_VERSION = "1"
# Shoppers repeat filters (facet clicks, paging); one full-catalog result is
# 8 bytes a row, so the cache is bounded by bytes as well as by entries.
CACHE_ENTRIES = 256
CACHE_BYTES = 32 * 1024 * 1024

# Each index leads with one filter column and carries the others (and row_id,
# implicitly), so whichever the planner picks answers a filter without
# touching the wide table rows.
_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE products (
    row_id INTEGER PRIMARY KEY,
    product_id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    brand TEXT NOT NULL,
    price REAL,
    in_stock INTEGER NOT NULL,
    attrs TEXT NOT NULL,
    category_key TEXT NOT NULL,
    brand_key TEXT NOT NULL
);
CREATE INDEX products_by_category ON products (category_key, brand_key, price, in_stock);
CREATE INDEX products_by_brand ON products (brand_key, category_key, price, in_stock);
CREATE INDEX products_by_price ON products (price, category_key, brand_key, in_stock);
CREATE INDEX products_by_stock ON products (in_stock, category_key, brand_key, price);
"""
_COLUMNS = "row_id, product_id, title, description, category, brand, price, in_stock, attrs"


def category_key(category: str) -> str:
    """The stored, comparable form of a category path: ``"A > B"`` -> ``"a > b"``."""
    return CATEGORY_SEPARATOR.join(split_category(category))


def brand_key(brand: str) -> str:
    """The stored, comparable form of a brand: stripped and case-folded."""
    return brand.strip().casefold()


def _row(row_id: int, product: Product) -> tuple:
    if product.price is not None and not math.isfinite(product.price):
        raise InvalidArgument(f"product {product.id!r}: price must be finite or None, got {product.price!r}")
    try:
        attrs = json.dumps(dict(product.attrs), ensure_ascii=False)
    except (TypeError, ValueError) as err:
        raise InvalidArgument(f"product {product.id!r}: attrs are not JSON-serializable: {err}") from err
    return (
        row_id,
        product.id,
        product.title,
        product.description,
        product.category,
        product.brand,
        product.price,
        int(product.in_stock),
        attrs,
        category_key(product.category),
        brand_key(product.brand),
    )


def write_product_store(path: Path, products: Iterable[Product]) -> int:
    """Create a new store at ``path`` holding ``products`` in order (row id = position).

    Returns the number of products; the file is fsynced before returning.
    ``attrs`` are stored as JSON, so they read back as JSON types (lists for
    tuples, string keys).
    Raises FileExistsError when ``path`` exists, InvalidArgument for a duplicate
    product id, a non-finite price or attrs that JSON can't hold. A failed write
    leaves no file behind.
    """
    path = Path(path)
    # O_EXCL claims the path atomically; SQLite takes an empty file as a new database.
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    try:
        # The file is built once and published by the snapshot writer; no
        # rollback journal is needed because a failed build is deleted.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(_SCHEMA)
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_row(i, p) for i, p in enumerate(products)),
            )
        except sqlite3.IntegrityError as err:  # a repeated product id, or a None field
            raise InvalidArgument(f"product store {path}: a product was rejected: {err}") from err
        (count,) = conn.execute("SELECT count(*) FROM products").fetchone()
        conn.executemany(
            "INSERT INTO meta VALUES (?, ?)", [("schema_version", SCHEMA_VERSION), ("count", str(count))]
        )
        conn.execute("COMMIT")
        # Statistics let the planner pick the most selective index for
        # combined filters (a brand is usually narrower than a category).
        conn.execute("ANALYZE")
        conn.close()
        with open(path, "rb") as f:
            os.fsync(f.fileno())
    except BaseException:
        conn.close()
        path.unlink(missing_ok=True)
        raise
    return count


class ProductStore:
    """Read-only access to a product store file; safe to share between threads.

    One connection is shared under a lock: every query is short (an indexed
    lookup or one filter scan, and filter results are cached), and sqlite3
    releases the GIL while it steps, so a lock is cheaper than a connection per
    executor thread that would have to be tracked and closed.
    Database errors after opening are raised as SnapshotError naming the file.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, count: int, *, cache_entries: int, cache_bytes: int):
        self._conn = conn
        self._path = path
        self._count = count
        self._lock = threading.Lock()
        self._cache: OrderedDict[Filters, np.ndarray] = OrderedDict()
        self._cache_entries = cache_entries
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0

    @classmethod
    def open(
        cls, path: Path, *, cache_entries: int = CACHE_ENTRIES, cache_bytes: int = CACHE_BYTES
    ) -> ProductStore:
        """Open the store at ``path`` read-only.

        Raises SnapshotError naming the path when it is missing, not a SQLite
        file, of another schema version, or its row ids are not 0..n-1.
        """
        path = Path(path)
        if not path.is_file():
            raise SnapshotError(f"product store {path} does not exist")
        # immutable=1: a published snapshot never changes, so SQLite may skip
        # file locking and change detection on every query.
        uri = f"{path.resolve().as_uri()}?mode=ro&immutable=1"
        try:
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as err:
            raise SnapshotError(f"product store {path} cannot be opened: {err}") from err
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("schema_version") != SCHEMA_VERSION:
                raise SnapshotError(
                    f"product store {path} has schema version {meta.get('schema_version')!r}, "
                    f"expected {SCHEMA_VERSION!r}"
                )
            count, min_id, max_id = conn.execute("SELECT count(*), min(row_id), max(row_id) FROM products").fetchone()
            if str(count) != meta.get("count") or (count and (min_id, max_id) != (0, count - 1)):
                raise SnapshotError(f"product store {path} is inconsistent: row ids are not 0..{count - 1}")
        except sqlite3.Error as err:
            conn.close()
            raise SnapshotError(f"product store {path} is corrupt: {err}") from err
        except SnapshotError:
            conn.close()
            raise
        return cls(conn, path, count, cache_entries=cache_entries, cache_bytes=cache_bytes)

    @property
    def path(self) -> Path:
        return self._path

    def __len__(self) -> int:
        return self._count

    def __enter__(self) -> ProductStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; later queries raise SnapshotError."""
        with self._lock:
            self._conn.close()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as err:
            raise SnapshotError(f"product store {self._path}: {err}") from err

    def get_many(self, row_ids: Sequence[int]) -> list[Product]:
        """The products at ``row_ids``, in that order (repeats allowed), in one query.

        Raises SnapshotError when a row id is not in the store (the index and
        the store of a snapshot disagree, or the caller passed FAISS padding).
        """
        wanted = [int(r) for r in row_ids]
        if not wanted:
            return []
        rows = self._query(
            f"SELECT {_COLUMNS} FROM products WHERE row_id IN (SELECT value FROM json_each(?))",
            (json.dumps(wanted),),
        )
        by_id = {row[0]: row for row in rows}
        missing = [r for r in wanted if r not in by_id]
        if missing:
            raise SnapshotError(f"product store {self._path} has no row ids {missing[:10]} (it has {self._count})")
        return [_product(by_id[r]) for r in wanted]

    def row_ids_for(self, product_ids: Sequence[str]) -> dict[str, int]:
        """Product id -> row id for the given ids; ids not in the store are left out."""
        if not product_ids:
            return {}
        rows = self._query(
            "SELECT product_id, row_id FROM products WHERE product_id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(product_ids)),),
        )
        return dict(rows)

    def all_product_ids(self) -> list[str]:
        """Every product id, in row order."""
        return [row[0] for row in self._query("SELECT product_id FROM products ORDER BY row_id")]

    def matching_rows(self, filters: Filters) -> np.ndarray:
        """Sorted int64 row ids of the products matching all ``filters`` (all rows when empty).

        The returned array is read-only: it may be shared with later callers
        through the bounded LRU cache of recent filters.
        """
        with self._lock:
            cached = self._cache.get(filters)
            if cached is not None:
                self._cache.move_to_end(filters)
                return cached
        if filters.is_empty:
            rows = np.arange(self._count, dtype=np.int64)
        else:
            where, params = _where(filters)
            result = self._query(f"SELECT row_id FROM products WHERE {where}", params)
            # Index order is not row order; numpy sorts faster than SQL's temp B-tree.
            rows = np.sort(np.fromiter((r[0] for r in result), dtype=np.int64, count=len(result)))
        rows.flags.writeable = False
        self._remember(filters, rows)
        return rows

    def _remember(self, filters: Filters, rows: np.ndarray) -> None:
        if rows.nbytes > self._cache_bytes or self._cache_entries <= 0:
            return
        with self._lock:
            previous = self._cache.pop(filters, None)
            if previous is not None:
                self._cached_bytes -= previous.nbytes
            self._cache[filters] = rows
            self._cached_bytes += rows.nbytes
            while len(self._cache) > self._cache_entries or self._cached_bytes > self._cache_bytes:
                _, evicted = self._cache.popitem(last=False)
                self._cached_bytes -= evicted.nbytes


def _where(filters: Filters) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if filters.category_prefix is not None:
        prefix = CATEGORY_SEPARATOR.join(filters.category_segments)
        # One index range scan over [p, p + " >!"), then keep p itself and
        # the keys from p + " > " on (drops siblings such as "p !x").
        clauses.append("category_key >= ? AND category_key < ? AND (category_key = ? OR category_key >= ?)")
        params += [prefix, prefix + " >!", prefix, prefix + " > "]
    if filters.brands:
        # Placeholders rather than json_each: the planner then sees how few
        # brands there are and prefers the brand index over a wide category.
        keys = sorted(filters.brand_keys)
        clauses.append(f"brand_key IN ({', '.join('?' * len(keys))})")
        params += keys
    if filters.price_min is not None:
        clauses.append("price >= ?")  # NULL >= x is NULL: unpriced rows never match
        params.append(float(filters.price_min))
    if filters.price_max is not None:
        clauses.append("price <= ?")
        params.append(float(filters.price_max))
    if filters.in_stock is not None:
        clauses.append("in_stock = ?")
        params.append(int(filters.in_stock))
    return " AND ".join(clauses), params


def _product(row: tuple) -> Product:
    _, product_id, title, description, category, brand, price, in_stock, attrs = row
    return Product(
        id=product_id,
        title=title,
        description=description,
        category=category,
        brand=brand,
        price=price,
        in_stock=bool(in_stock),
        attrs=json.loads(attrs),
    )

