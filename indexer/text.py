"""Which product fields make the text that is embedded.

A composition is a tuple of field names: ``title``, ``description``,
``category``, ``brand``, or ``attrs.KEY`` for an attribute. Non-empty values
are joined with ". ". The default was chosen by measured nDCG@10 on the
fashion dev queries (bench/RESULTS.md, "Text composition").
"""

from __future__ import annotations

from typing import Sequence

from search.product import Product

DEFAULT_FIELDS: tuple[str, ...] = ("title", "category", "attrs.base_colour", "attrs.gender")
_PLAIN_FIELDS = ("title", "description", "category", "brand")


def parse_fields(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"title,category"`` or a sequence -> validated field tuple; ValueError names a bad field."""
    fields = tuple(f.strip() for f in (spec.split(",") if isinstance(spec, str) else spec) if f.strip())
    if not fields:
        raise ValueError("text fields: at least one field is needed")
    for name in fields:
        if name not in _PLAIN_FIELDS and not (name.startswith("attrs.") and len(name) > len("attrs.")):
            raise ValueError(f"text fields: unknown field {name!r} (use {', '.join(_PLAIN_FIELDS)} or attrs.KEY)")
    return fields


def _value(product: Product, name: str) -> str:
    if name.startswith("attrs."):
        value = product.attrs.get(name[len("attrs.") :])
        return value.strip() if isinstance(value, str) else ""
    return str(getattr(product, name) or "").strip()


def compose_text(product: Product, fields: Sequence[str] = DEFAULT_FIELDS) -> str:
    """The text to embed for ``product``."""
    return ". ".join(v for v in (_value(product, name) for name in fields) if v)
