"""A catalog product, as the indexer stores it and the service returns it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

CATEGORY_SEPARATOR = " > "


@dataclass(frozen=True, kw_only=True, slots=True)
class Product:
    """One product. ``category`` is a path such as ``"Footwear > Shoes > Casual Shoes"``."""

    id: str
    title: str
    description: str = ""
    category: str = ""
    brand: str = ""
    price: float | None = None
    in_stock: bool = True
    attrs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def category_path(self) -> tuple[str, ...]:
        return tuple(part.strip() for part in self.category.split(">") if part.strip())
