"""The spend ledger: what every answered request really cost, per client key and UTC day, and the daily caps
read from it.

Why a database (SQLite from the standard library, in WAL mode, under the run's folder): the totals, and so
the caps, survive a restart, and a process reading the stats never blocks the one writing. Each request is
one transaction that writes its row into ``requests`` and adds it to its day's totals in ``daily``: a
crash leaves it counted once or not at all, never twice (its id is the primary key, so a second write of
it fails as a whole). Synchronous NORMAL, as SQLite advises for WAL: a crash of the service loses nothing,
a power cut may lose the last requests (not fsynced each, which would hold the event loop 2 ms a request).
Costs are whole units of 1e-12 USD, tokens x the expert's price in micro-USD per 1M tokens, exact, as
``routing.budget`` counts the budget.

A cap holds at admission: a key (or the service) at or over its cap for the day gets 429 until midnight
UTC; requests admitted before it was reached still finish and count (at most the key's rate of requests).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from .errors import CapReached

LEDGER_PATH = "serving/ledger.sqlite3"  # under the profile's output folder
SCHEMA_VERSION = 1
PICO = 10**12  # cost units per USD
SCHEMA = """
CREATE TABLE requests (
    id TEXT PRIMARY KEY, day TEXT NOT NULL, key TEXT NOT NULL, expert TEXT NOT NULL,
    price_units INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_units INTEGER NOT NULL, outcome TEXT NOT NULL, reported INTEGER NOT NULL, at TEXT NOT NULL
);
CREATE TABLE daily (
    day TEXT NOT NULL, key TEXT NOT NULL, expert TEXT NOT NULL, requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, cost_units INTEGER NOT NULL,
    price_units INTEGER NOT NULL, PRIMARY KEY (day, key, expert)
);
"""


@dataclass(frozen=True)
class Spend:
    """One answered request: whose key, which expert at what price (micro-USD per 1M tokens), the tokens it
    used, whether the expert reported them (else the service counted them) and how the answer ended
    (``answered``, or ``cancelled`` by the client, ``broken`` by the expert, cut by a ``shutdown``)."""

    request_id: str
    key: str
    expert: str
    price_units: int
    prompt_tokens: int
    completion_tokens: int
    outcome: str
    reported: bool

    @property
    def cost_units(self) -> int:
        return (self.prompt_tokens + self.completion_tokens) * self.price_units


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Ledger:
    """The spend of ``path`` (created on first use), with the daily caps per key and over all keys (USD)."""

    def __init__(self, path: Path, key_daily_cap_usd: float, daily_cap_usd: float):
        self.path = Path(path)
        self.key_cap_usd = key_daily_cap_usd
        self.cap_usd = daily_cap_usd
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10)
        self._lock = threading.Lock()  # one connection, shared by the event loop and readers of the stats
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # no fsync per request (2 ms on the event loop); see above
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise ValueError(
                f"{self.path} is a ledger of schema version {version}, this service writes version "
                f"{SCHEMA_VERSION}: move the file aside (its spend stays readable with sqlite3) and restart"
            )

    def record(self, spend: Spend) -> None:
        """Count one request: its row and its day's totals, in one transaction."""
        now = _now()
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spend.request_id,
                    now.date().isoformat(),
                    spend.key,
                    spend.expert,
                    spend.price_units,
                    spend.prompt_tokens,
                    spend.completion_tokens,
                    spend.cost_units,
                    spend.outcome,
                    int(spend.reported),
                    now.isoformat(),
                ),
            )
            self._db.execute(
                "INSERT INTO daily VALUES (?, ?, ?, 1, ?, ?, ?, ?) ON CONFLICT (day, key, expert) DO UPDATE SET "
                "requests = requests + 1, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
                "completion_tokens = completion_tokens + excluded.completion_tokens, "
                "cost_units = cost_units + excluded.cost_units, price_units = price_units + excluded.price_units",
                (
                    now.date().isoformat(),
                    spend.key,
                    spend.expert,
                    spend.prompt_tokens,
                    spend.completion_tokens,
                    spend.cost_units,
                    spend.price_units,
                ),
            )

    def _spent_today(self, key: str | None = None) -> float:
        """USD spent today (UTC) by ``key``, or by every key."""
        query, params = "SELECT COALESCE(SUM(cost_units), 0) FROM daily WHERE day = ?", [_now().date().isoformat()]
        if key is not None:
            query, params = query + " AND key = ?", params + [key]
        with self._lock:
            return self._db.execute(query, params).fetchone()[0] / PICO

    def admit(self, key: str) -> None:
        """429 when ``key``, or the service, has spent its cap today (UTC)."""
        for spent, cap, setting, who in (
            (self._spent_today(key), self.key_cap_usd, "key_daily_cap_usd", f"{key} has"),
            (self._spent_today(), self.cap_usd, "daily_cap_usd", "the service has, over all keys,"),
        ):
            if spent >= cap:
                now = _now()
                resets = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
                raise CapReached(
                    f"{who} spent {spent:.6g} USD today, at or over its daily cap of {cap:g} USD "
                    f"(service.{setting}); it resets at {resets.isoformat()} (midnight UTC)",
                    setting,
                    retry_after_s=int((resets - now).total_seconds()) + 1,
                )

    def report(self, key: str) -> dict:
        """Every request the ledger holds (not only this process's), and today's spend against the caps."""
        with self._lock:
            rows = self._db.execute(
                "SELECT expert, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), SUM(cost_units), "
                "SUM(price_units) FROM daily GROUP BY expert"
            ).fetchall()
        answered = sum(r[1] for r in rows)
        return {
            "answered": answered,
            "by_expert": {r[0]: r[1] for r in rows},
            "prompt_tokens": sum(r[2] for r in rows),
            "completion_tokens": sum(r[3] for r in rows),
            "spend_usd": sum(r[4] for r in rows) / PICO,
            "mean_price_per_1m_usd": sum(r[5] for r in rows) / 1e6 / answered if answered else None,
            "today": {
                "day": _now().date().isoformat(),
                "spend_usd": self._spent_today(),
                "cap_usd": self.cap_usd,
                "key": key,
                "key_spend_usd": self._spent_today(key),
                "key_cap_usd": self.key_cap_usd,
            },
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
