"""Operator-wide Kopf settings: where Kopf keeps its bookkeeping, what it posts."""

import asyncio
import logging
from typing import Any

import kopf

from gpufinops.api.resource import GROUP

ANNOTATION_PREFIX = GROUP


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Keep Kopf's state in our own annotations; our status schema has no room for it.

    Status fields Kopf would write (``status.kopf``) are pruned by the
    structural schema, which would make handlers re-run forever.
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX
    )
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Our handlers post their own, meaningful Events; Kopf's per-handler
    # "succeeded" chatter is left to the logs.
    settings.posting.level = logging.WARNING
    # Idle-node daemons share one lock so two nodes never take the last budget unit.
    memo.idle_lock = asyncio.Lock()
    memo.idle_claims = {}
    memo.idle_tasks = {}
    memo.node_bodies = {}
    memo.idle_indexes = {}
