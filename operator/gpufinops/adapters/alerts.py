"""Budget alerts beyond Kubernetes Events: an Alertmanager and a generic JSON webhook.

Events are the record (``kubectl describe``, event exporters); these
deliveries are for people who are paged from Alertmanager or a chat
webhook. Delivery is best effort: one attempt per alert, failures are
logged and counted, never retried forever, because the Event has already
been posted and a budget alert that arrives an hour late is noise.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from gpufinops.adapters.http_client import CredentialsUnavailable, session_for
from gpufinops.config.model import AlertingConfig

log = logging.getLogger(__name__)

ALERT_TTL = timedelta(hours=1)
"""How long Alertmanager keeps an alert firing without hearing of it again."""


SPEND_ANOMALY = "SpendAnomaly"


@dataclass(frozen=True)
class BudgetAlert:
    """One budget or spend-anomaly alert, as delivered."""

    reason: str
    """BudgetThresholdCrossed, BudgetProjectedToExceed, BudgetExceeded or SpendAnomaly."""
    key: str
    message: str
    namespace: str
    workload: str
    time: datetime
    labels: Mapping[str, str] = field(default_factory=dict)
    """costAllocation keys (team, project, model, environment) that are set."""
    level: str | None = None
    """The severity when the reason alone does not decide it (spend anomalies)."""

    @property
    def severity(self) -> str:
        if self.level is not None:
            return self.level
        return "info" if self.reason == "BudgetThresholdCrossed" else "warning"

    @property
    def identity(self) -> dict[str, str]:
        """``period``, ``period_id`` and ``threshold`` from the memory key.

        Alertmanager merges alerts with equal label sets, so the 50 % and the
        80 % alert of one day would collapse into one without them, and today's
        alert would refresh yesterday's. ``threshold`` is the fraction crossed
        (``1`` for BudgetExceeded); a projection has none.
        """
        if self.reason == SPEND_ANOMALY:  # anomaly/<scope>/<group>/<hour>: one per start
            return {"hour": self.key.rpartition("/")[2]}
        period, _, rest = self.key.partition(":")
        period_id, _, what = rest.rpartition(":")
        out = {"period": period, "period_id": period_id}
        if what == "exceeded":
            out["threshold"] = "1"
        elif what != "projected":
            out["threshold"] = what
        return out


def alertmanager_payload(alerts: Sequence[BudgetAlert]) -> list[dict[str, Any]]:
    """The body of ``POST /api/v2/alerts``: labels identify, annotations explain."""
    return [
        {
            "labels": {
                k: v
                for k, v in {
                    "alertname": a.reason,
                    "namespace": a.namespace,
                    "workload": a.workload,
                    "severity": a.severity,
                    "source": "gpufinops",
                    **a.identity,
                    **dict(a.labels),
                }.items()
                if v  # a team's budget has no namespace or workload: no empty label
            },
            "annotations": {"summary": a.message, "key": a.key},
            "startsAt": a.time.isoformat(),
            "endsAt": (a.time + ALERT_TTL).isoformat(),
        }
        for a in alerts
    ]


def webhook_payload(alert: BudgetAlert) -> dict[str, Any]:
    return {
        "source": "gpufinops",
        "reason": alert.reason,
        "severity": alert.severity,
        "key": alert.key,
        **alert.identity,
        "message": alert.message,
        "namespace": alert.namespace,
        "workload": alert.workload,
        "labels": dict(alert.labels),
        "time": alert.time.isoformat(),
    }


class AlertSender:
    """Posts alerts to the configured endpoints; a no-op when none is configured.

    The Alertmanager is reached with ``alerting.alertmanagerClient`` (headers,
    credentials, TLS); the webhook with a plain session, its URL being the
    credential. A ``session`` given here is used for both (tests).
    """

    def __init__(self, config: AlertingConfig, session: requests.Session | None = None) -> None:
        self.config = config
        self.session = session or requests.Session()
        self.alertmanager_session = session or session_for(
            config.alertmanager_client, prefix="alerting.alertmanagerClient."
        )

    @property
    def enabled(self) -> bool:
        c = self.config
        return bool(c.alertmanager_url or c.webhook_url or c.webhook_url_file)

    def _webhook_url(self) -> str | None:
        """The webhook URL; from its file at every delivery (a rotated Secret just works)."""
        if self.config.webhook_url_file is None:
            return self.config.webhook_url
        try:
            url = Path(self.config.webhook_url_file).read_text().strip()
        except OSError as exc:
            log.warning("alert webhook URL file %s unreadable: %s",
                        self.config.webhook_url_file, type(exc).__name__)  # fmt: skip
            return None
        if not url.startswith(("http://", "https://")):
            log.warning("alert webhook URL file %s holds no http(s) URL",
                        self.config.webhook_url_file)  # fmt: skip
            return None
        return url

    def _post(
        self, url: str, body: Any, where: str, session: requests.Session | None = None
    ) -> bool:
        """POST ``body``; logs name the endpoint as ``where``, never the URL, which may
        carry a token (and neither the exception text, which quotes it, except for
        missing credentials, whose message names only the config key and the file)."""
        try:
            response = (session or self.session).post(
                url, json=body, timeout=self.config.timeout_seconds
            )
        except CredentialsUnavailable as exc:
            log.warning("budget alert delivery to %s failed: %s", where, exc)
            return False
        except requests.RequestException as exc:
            log.warning("budget alert delivery to %s failed: %s", where, type(exc).__name__)
            return False
        if response.status_code >= 300:
            log.warning("budget alert delivery to %s: HTTP %s", where, response.status_code)
            return False
        return True

    def send(self, alerts: Sequence[BudgetAlert]) -> int:
        """Deliver every alert; returns how many deliveries failed (blocking: run in a thread)."""
        failed = 0
        if not alerts:
            return failed
        if self.config.alertmanager_url:
            url = self.config.alertmanager_url.rstrip("/") + "/api/v2/alerts"
            failed += not self._post(
                url, alertmanager_payload(alerts), "Alertmanager", self.alertmanager_session
            )
        if self.config.webhook_url or self.config.webhook_url_file:
            webhook = self._webhook_url()
            for a in alerts:
                failed += webhook is None or not self._post(
                    webhook, webhook_payload(a), "the alert webhook"
                )
        return failed
