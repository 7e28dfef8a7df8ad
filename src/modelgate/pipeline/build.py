"""The order of the pipeline, top to bottom, in one place.

A request passes the stages in this order, and its events come back through them in reverse.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelgate.pipeline.chain import Handler, Stage, build_chain
from modelgate.pipeline.dispatch import Dispatch
from modelgate.providers.base import Provider


def build_handler(providers: Mapping[str, Provider], stages: list[Stage] | None = None) -> Handler:
    return build_chain(stages or [], Dispatch(providers))
