"""The one way handlers post a Kubernetes Event: a reason from ``core.events`` only.

Kopf's ``kopf.event`` takes any string; going through ``post`` (typed) keeps every
reason the operator posts in ``EventReason``, which the docs catalogue enumerates.
"""

from collections.abc import Mapping
from typing import Any, cast

import kopf

from gpufinops.controllers.effects import EventPoster
from gpufinops.core.events import EventReason


def post(on: Mapping[str, Any], type: str, reason: EventReason, message: str) -> None:
    """Post on ``on``: an object body, or a mapping with apiVersion, kind and metadata."""
    body = on if isinstance(on, kopf.Body) else cast(kopf.Body, dict(on))
    kopf.event(body, type=type, reason=EventReason(reason), message=message)


def poster(on: Mapping[str, Any]) -> EventPoster:
    """``post`` bound to one object: the EventPoster a controller is given."""

    def post_on(type: str, reason: EventReason, message: str) -> None:
        post(on, type, reason, message)

    return post_on
