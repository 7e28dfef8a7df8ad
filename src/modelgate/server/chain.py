"""The order of the pipeline, top to bottom, in one place.

A request passes the stages in this order, and its events come back through them in reverse.
"""

from __future__ import annotations

from modelgate.pipeline.contract import Handler, Stage, build_chain
from modelgate.routing import Router


def build_handler(router: Router, stages: list[Stage] | None = None, *, metering: Stage | None = None,
                  rate_limit: Stage | None = None, safety: Stage | None = None,
                  cache: Stage | None = None, budget: Stage | None = None,
                  experiments: Stage | None = None) -> Handler:
    """The stages in order, ending at the router (routing/router.py), which calls the providers:

    0. ``experiments`` (server/experiments.py) outside them all: it draws a call's arm of its
       deployment's experiment before any stage sees it, and reads the usage record metering made
       of the call once it has ended, for the experiment's results.
    1. ``metering`` (metering/stage.py) outermost: it sees how every call ends, so a request
       that an inner stage refuses (429) or that fails anywhere still gets its one usage record.
    2. ``rate_limit`` (limits/stage.py): requests and tokens per minute. Before the budget, so a
       request over its rate reserves no money, and the cheapest refusal comes first.
    3. ``safety`` (safety/stage.py): the deployment's content policy. After the rate limit, so a
       blocked prompt still counts as a request; before the budget, so it reserves no money. Its
       output checks see the answer as the client will get it, after every inner stage.
    4. ``cache`` (cache/stage.py): answers a request it has the answer of. After the rate limit
       (a hit counts as a request) and the content policy (whose input checks every request
       passes, and whose output checks see a replayed answer too); before the budget, so a hit
       reserves nothing (one the deployment prices passes the budget from inside the cache).
    5. ``budget`` (budgets/stage.py): reserves the most the request may cost, settles at the end.
    6. ``stages``: the rest (response rewriting: reasoning split out of the text), in the order given.
    """
    governed = [stage for stage in (experiments, metering, rate_limit, safety, cache, budget) if stage is not None]
    return build_chain(governed + (stages or []), router)
