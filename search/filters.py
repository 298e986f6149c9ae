"""Query-time filters on catalog fields, validated at construction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from search.errors import InvalidArgument


def split_category(path: str) -> tuple[str, ...]:
    """``"A > B > C"`` -> ``("a", "b", "c")``: segments stripped and case-folded."""
    return tuple(part.strip().casefold() for part in path.split(">") if part.strip())


@dataclass(frozen=True, kw_only=True)
class Filters:
    """Which products a search may return; an empty Filters allows all.

    - ``category_prefix``: whole leading segments of the category path,
      case-insensitive: ``"Footwear > Shoes"`` matches
      ``"Footwear > Shoes > Casual Shoes"``, ``"Foot"`` matches nothing.
    - ``brands``: any of these brands, case-insensitive exact match.
    - ``price_min`` / ``price_max``: inclusive bounds; products without a
      price never match a price bound.
    - ``in_stock``: when set, only products with that stock state.

    Raises InvalidArgument naming the field when a value is invalid.
    """

    category_prefix: str | None = None
    brands: frozenset[str] = frozenset()
    price_min: float | None = None
    price_max: float | None = None
    in_stock: bool | None = None

    def __post_init__(self) -> None:
        if self.category_prefix is not None and not split_category(self.category_prefix):
            raise InvalidArgument("filters.category_prefix: must name at least one category segment")
        if any(not isinstance(b, str) or not b.strip() for b in self.brands):
            raise InvalidArgument("filters.brands: brands must be non-empty strings")
        for name in ("price_min", "price_max"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise InvalidArgument(f"filters.{name}: must be a finite number >= 0, got {value!r}")
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise InvalidArgument(
                f"filters.price_min ({self.price_min}) is greater than filters.price_max ({self.price_max})"
            )

    @property
    def is_empty(self) -> bool:
        return (
            self.category_prefix is None
            and not self.brands
            and self.price_min is None
            and self.price_max is None
            and self.in_stock is None
        )

    @property
    def category_segments(self) -> tuple[str, ...]:
        return split_category(self.category_prefix) if self.category_prefix is not None else ()

    @property
    def brand_keys(self) -> frozenset[str]:
        return frozenset(b.strip().casefold() for b in self.brands)
