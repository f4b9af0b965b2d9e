"""The Store: one connection that does every job of the store (each job a mixin in its own module).

Why one class: sender, listener and the application each hold one store and call whichever jobs
they need on it; the modules keep the jobs apart for the reader, the class keeps them together
for the callers.
"""

from __future__ import annotations

from shared.store.failures import Failures
from shared.store.judging import Judging
from shared.store.maintenance import Maintenance
from shared.store.notes import Notes
from shared.store.queries import StatusQueries
from shared.store.receipts import Receipts
from shared.store.sending import SenderWrites
from shared.store.subscriptions import Subscriptions


class Store(SenderWrites, Subscriptions, Receipts, Judging, Failures, Notes, StatusQueries, Maintenance):
    """One connection to the shared file; safe to use from several threads of a process."""
