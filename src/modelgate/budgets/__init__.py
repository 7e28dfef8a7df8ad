"""Budgets: spend per key and per project over a UTC day or month, never overspent.

``ledger.py`` holds the accounts (``LocalLedger`` in this process; ``redis.py`` ``RedisLedger``
shared through Redis); ``stage.py`` reserves a request's most expensive outcome before it starts
and settles with its real price when it ends, refusing with 429 ``insufficient_quota`` a request
that could go over; ``sync.py`` keeps the ledger at least at the database's totals.
"""

from modelgate.budgets.ledger import Budget, Hold, Ledger, LocalLedger, PeriodClock, Verdict, budgets_for
from modelgate.budgets.stage import BudgetGuard
from modelgate.budgets.sync import SpendSync
from modelgate.schema.errors import BudgetExceeded

__all__ = [
    "Budget",
    "BudgetExceeded",
    "BudgetGuard",
    "Hold",
    "Ledger",
    "LocalLedger",
    "PeriodClock",
    "SpendSync",
    "Verdict",
    "budgets_for",
]
