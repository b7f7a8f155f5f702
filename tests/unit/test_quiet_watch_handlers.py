"""Kopf's per-event success lines for heartbeat-fed handlers stay out of the logs."""

import logging

import pytest

from gpufinops.handlers.startup import WATCH_HANDLERS, QuietWatchHandlers, configure


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)


def test_successes_of_watch_handlers_are_dropped_and_everything_else_kept() -> None:
    quiet = QuietWatchHandlers()
    assert not quiet.filter(record(logging.INFO, "Handler 'track_node' succeeded."))
    assert quiet.filter(record(logging.INFO, "Handler 'spec_changed' succeeded."))
    assert quiet.filter(record(logging.ERROR, "Handler 'track_node' succeeded."))
    assert quiet.filter(
        record(logging.ERROR, "Handler 'track_node' failed with an exception and will try again")
    )


def test_the_filter_sits_on_kopfs_object_logger_once(caplog: pytest.LogCaptureFixture) -> None:
    class Bag:
        pass

    settings = __import__("kopf").OperatorSettings()
    configure(settings=settings, memo=Bag())
    configure(settings=settings, memo=Bag())
    objects = logging.getLogger("kopf.objects")
    assert sum(isinstance(f, QuietWatchHandlers) for f in objects.filters) == 1
    caplog.set_level(logging.INFO, logger="kopf.objects")
    for name in WATCH_HANDLERS:
        objects.info(f"Handler {name!r} succeeded.")
    objects.info("Handler 'spec_changed' succeeded.")
    assert [r.getMessage() for r in caplog.records] == ["Handler 'spec_changed' succeeded."]


def test_the_quiet_list_is_every_watch_event_handler_registered() -> None:
    # A renamed or added on.event handler would silently escape the filter.
    import kopf

    import gpufinops.handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    registered = {str(h.id) for h in registry._watching.get_all_handlers()}
    assert registered == set(WATCH_HANDLERS)
