"""Metering: exactly one usage record per request, priced, written off the request path.

``stage.py`` (the ``Metering`` stage) makes the record as a call ends; ``recorder.py``
(``UsageRecorder``) queues it and writes batches to storage; ``journal.py`` keeps every record on
disk until the database has it (outages, crashes); ``pricing.py`` is the price table on the
request path; ``usage.py`` says what a call used, reported or estimated. ``uptime.py``
(``UptimeRecorder``) stores how long local models' replicas run, the base of their compute cost.
"""

from modelgate.metering.journal import Journal
from modelgate.metering.pricing import NANO, PriceBook, Rates
from modelgate.metering.recorder import UsageRecorder, UsageSink
from modelgate.metering.stage import CLIENT_CLOSED, Metering, Recorder
from modelgate.metering.uptime import UptimeRecorder
from modelgate.metering.usage import UsageWatch, estimate_request_tokens

__all__ = [
    "CLIENT_CLOSED",
    "NANO",
    "Journal",
    "Metering",
    "PriceBook",
    "Rates",
    "Recorder",
    "UptimeRecorder",
    "UsageRecorder",
    "UsageSink",
    "UsageWatch",
    "estimate_request_tokens",
]
