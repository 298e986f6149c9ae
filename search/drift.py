"""Query drift: how today's queries look to the service, compared with a reference.

Each answered query gives five signals: the top-1 similarity, the top-1/top-2
margin, its length in tokens, its unknown-token rate, and whether it had no
hit above a floor. A snapshot carries a reference sample of those signals
(built by the indexer from reference queries, or taken from the first live
queries). A rolling window of live signals is compared with the reference by
the Population Stability Index per signal; the worst signal sets the state:
ok, warn (PSI >= warn_psi) or alert (PSI >= alert_psi). Each state change is
logged once.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger(__name__)

SIGNALS = ("top1", "margin", "tokens", "unknown_rate", "no_hit")
STATES = ("ok", "warn", "alert")
REFERENCE_FILE = "drift_reference.json"
_EPSILON = 1e-4  # keeps PSI finite when a bin is empty on one side


@dataclass(frozen=True, kw_only=True)
class DriftSettings:
    window: int = 500
    evaluate_every: int = 50
    bins: int = 10
    # Measured (bench/RESULTS.md, "Drift"): distinct fashion-stream queries
    # against fashion dev queries reach PSI 0.28 at most; SciFact claims 4.9+.
    # The textbook 0.1 / 0.25 would flag same-domain phrasing changes.
    warn_psi: float = 0.5
    alert_psi: float = 1.0
    no_hit_floor: float = 0.3

    def __post_init__(self) -> None:
        if self.window < 20 or self.evaluate_every < 1 or self.bins < 2:
            raise ValueError("drift: window >= 20, evaluate_every >= 1 and bins >= 2 are needed")
        if not 0 < self.warn_psi <= self.alert_psi:
            raise ValueError("drift: 0 < warn_psi <= alert_psi is needed")


def query_signals(scores: Sequence[float], tokens: int, unknown: int, *, no_hit_floor: float) -> tuple[float, ...]:
    """The five signals of one query from its best scores (descending) and token counts."""
    top1 = float(scores[0]) if len(scores) else 0.0
    top2 = float(scores[1]) if len(scores) > 1 else top1
    return (top1, top1 - top2, float(tokens), unknown / max(tokens, 1), float(top1 < no_hit_floor))


@dataclass(frozen=True)
class Reference:
    """A sample of signals, (n, 5); what "normal" looks like for one snapshot."""

    samples: np.ndarray
    source: str

    def to_file(self, path: Path) -> None:
        Path(path).write_text(json.dumps({"signals": list(SIGNALS), "source": self.source,
                                          "samples": np.round(self.samples, 6).tolist()}))

    @classmethod
    def from_file(cls, path: Path) -> Reference:
        """Raises ValueError on a malformed file."""
        data = json.loads(Path(path).read_text())
        samples = np.asarray(data["samples"], dtype=np.float64)
        if data.get("signals") != list(SIGNALS) or samples.ndim != 2 or samples.shape[1] != len(SIGNALS) or len(samples) < 2:
            raise ValueError(f"drift reference {path} is malformed")
        return cls(samples=samples, source=str(data.get("source", "")))


def psi(reference: np.ndarray, live: np.ndarray, bins: int) -> float:
    """Population Stability Index of ``live`` against ``reference`` over reference-quantile bins."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    actual = np.bincount(np.searchsorted(edges, live, side="right"), minlength=len(edges) + 1) / len(live)
    expected, actual = np.maximum(expected, _EPSILON), np.maximum(actual, _EPSILON)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


@dataclass(frozen=True)
class DriftReport:
    state: str
    psi: dict[str, float] = field(default_factory=dict)
    window: int = 0
    reference: str = ""


class DriftMonitor:
    """Rolling comparison of live query signals with a reference. Thread-safe."""

    def __init__(self, settings: DriftSettings, reference: Reference | None = None) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._window: deque[tuple[float, ...]] = deque(maxlen=settings.window)
        self._reference = reference
        self._learning: list[tuple[float, ...]] = []
        self._since_evaluation = 0
        self._report = DriftReport(state="ok", reference=reference.source if reference else "learning")
        self.state_changes = 0

    @property
    def report(self) -> DriftReport:
        return self._report

    def reset(self, reference: Reference | None) -> None:
        """A new snapshot went live: compare against its reference (or learn one again)."""
        with self._lock:
            self._reference = reference
            self._learning.clear()
            self._window.clear()
            self._since_evaluation = 0
            self._report = DriftReport(state="ok", reference=reference.source if reference else "learning")

    def observe(self, signals: tuple[float, ...]) -> None:
        """Add one query's signals; re-evaluates every ``evaluate_every`` queries."""
        with self._lock:
            if self._reference is None:
                self._learning.append(signals)
                if len(self._learning) >= self.settings.window:
                    self._reference = Reference(samples=np.asarray(self._learning), source="first live queries")
                    self._learning = []
                    self._report = DriftReport(state="ok", reference=self._reference.source)
                return
            self._window.append(signals)
            self._since_evaluation += 1
            if self._since_evaluation >= self.settings.evaluate_every and len(self._window) >= self.settings.window // 2:
                self._since_evaluation = 0
                self._evaluate()

    def _evaluate(self) -> None:
        s = self.settings
        live = np.asarray(self._window)
        reference = self._reference.samples
        figures = {name: round(psi(reference[:, i], live[:, i], s.bins), 4) for i, name in enumerate(SIGNALS)}
        worst = max(figures.values())
        state = "alert" if worst >= s.alert_psi else "warn" if worst >= s.warn_psi else "ok"
        previous = self._report.state
        self._report = DriftReport(state=state, psi=figures, window=len(live), reference=self._reference.source)
        if state != previous:
            self.state_changes += 1
            log.warning("query drift state %s -> %s (PSI %s)", previous, state, figures)
