"""Budget alerts to Alertmanager and a webhook: payload shapes, best-effort delivery."""

from datetime import UTC, datetime
from typing import Any

import requests

from gpufinops.adapters.alerts import AlertSender, BudgetAlert
from gpufinops.config.model import AlertingConfig

ALERT = BudgetAlert(
    "BudgetExceeded", "day:2026-11-27:exceeded", "day 2026-11-27: budget exceeded", "ml", "llm",
    datetime(2026, 11, 27, 10, tzinfo=UTC), {"team": "search"},
)  # fmt: skip


class FakeSession:
    def __init__(self, status: int = 200, error: bool = False) -> None:
        self.posts: list[tuple[str, Any]] = []
        self.status, self.error = status, error

    def post(self, url: str, json: Any, timeout: float) -> Any:
        self.posts.append((url, json))
        if self.error:
            raise requests.ConnectionError("refused")
        response = requests.Response()
        response.status_code = self.status
        return response


def sender(session: FakeSession, **urls: str) -> AlertSender:
    return AlertSender(AlertingConfig.model_validate(urls), session)  # type: ignore[arg-type]


def test_nothing_is_sent_without_endpoints() -> None:
    session = FakeSession()
    s = sender(session)
    assert not s.enabled and s.send([ALERT]) == 0 and session.posts == []


def test_alertmanager_gets_one_batch_and_the_webhook_one_object_per_alert() -> None:
    session = FakeSession()
    s = sender(session, alertmanagerURL="http://am:9093/", webhookURL="http://hook/x")
    assert s.send([ALERT, ALERT]) == 0
    (am_url, batch), *hooks = session.posts
    assert am_url == "http://am:9093/api/v2/alerts" and len(batch) == 2
    assert batch[0]["labels"] == {"alertname": "BudgetExceeded", "namespace": "ml",
                                  "workload": "llm", "severity": "warning",
                                  "source": "gpufinops", "period": "day",
                                  "period_id": "2026-11-27", "threshold": "1",
                                  "team": "search"}  # fmt: skip
    assert batch[0]["annotations"]["summary"] == "day 2026-11-27: budget exceeded"
    assert batch[0]["endsAt"] == "2026-11-27T11:00:00+00:00"
    assert [u for u, _ in hooks] == ["http://hook/x", "http://hook/x"]
    assert hooks[0][1]["key"] == "day:2026-11-27:exceeded" and hooks[0][1]["labels"] == {
        "team": "search"
    }


def test_failures_are_counted_not_raised() -> None:
    assert sender(FakeSession(status=500), webhookURL="http://hook").send([ALERT]) == 1
    assert sender(FakeSession(error=True), alertmanagerURL="http://am").send([ALERT]) == 1


def test_thresholds_of_one_period_stay_distinct_alerts() -> None:
    """Alertmanager merges equal label sets: each threshold and period needs its own."""
    half = BudgetAlert("BudgetThresholdCrossed", "month:2026-11:0.5", "m", "ml", "llm",
                       ALERT.time)  # fmt: skip
    projected = BudgetAlert("BudgetProjectedToExceed", "month:2026-11:projected", "m", "ml",
                            "llm", ALERT.time)  # fmt: skip
    assert half.identity == {"period": "month", "period_id": "2026-11", "threshold": "0.5"}
    assert projected.identity == {"period": "month", "period_id": "2026-11"}


def test_the_webhook_url_comes_from_a_secret_file_and_is_never_logged(
    tmp_path: Any, caplog: Any
) -> None:
    secret = tmp_path / "url"
    secret.write_text("https://hooks.example.com/services/T0/B0/s3cr3t\n")
    session = FakeSession()
    s = sender(session, webhookURLFile=str(secret))
    assert s.enabled and s.send([ALERT]) == 0
    assert session.posts[0][0] == "https://hooks.example.com/services/T0/B0/s3cr3t"
    secret.write_text("https://hooks.example.com/services/T0/B0/rotated")
    s.send([ALERT])
    assert session.posts[-1][0].endswith("/rotated"), "a rotated Secret is read again"

    class Leaky(FakeSession):
        def post(self, url: str, json: Any, timeout: float) -> Any:
            raise requests.ConnectionError(f"Max retries exceeded with url: {url}")

    with caplog.at_level("WARNING"):
        assert sender(Leaky(), webhookURLFile=str(secret)).send([ALERT]) == 1
        assert sender(FakeSession(status=500), webhookURL="https://h/s3cr3t").send([ALERT]) == 1
    assert caplog.records and not any("rotated" in r.getMessage() or "s3cr3t" in r.getMessage()
                                      for r in caplog.records)  # fmt: skip
    secret.unlink()
    assert sender(FakeSession(), webhookURLFile=str(secret)).send([ALERT]) == 1


def test_one_webhook_setting_at_a_time() -> None:
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError, match="not both"):
        AlertingConfig.model_validate({"webhookURL": "http://h", "webhookURLFile": "/f"})
