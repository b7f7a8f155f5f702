"""The forecaster's life in a scaling loop, the same for the operator and the simulator.

Each tick scores the model in use on what demand turned out to be (``observe``) and,
once it has earned trust, forecasts the peak of the lead window. A refit is due on
the model's own schedule; the fresh model replaces the one in use only when it is
ready (``swap``), so a tick never waits on a fit: the operator fits in a worker
thread, the simulator at once, and both swap the same way. Settings edited in the
spec, or signals that changed, start over with a model of their own.
"""

from __future__ import annotations

from gpufinops.core.forecast.model import DemandForecaster
from gpufinops.core.forecast.report import ForecastPoint, ForecastReport
from gpufinops.core.forecast.series import DemandSeries
from gpufinops.core.forecast.settings import ForecastSettings


class ForecastCycle:
    """One workload's forecaster: which model is in use, and when to fit another."""

    def __init__(self) -> None:
        self.forecaster: DemandForecaster | None = None
        self.settings: ForecastSettings | None = None

    def use(self, settings: ForecastSettings | None) -> None:
        """Forecast with ``settings`` (None: forecasting is off). New settings start
        from an unfitted model, which reports why it does not forecast yet."""
        if settings is None:
            self.reset()
        elif self.forecaster is None or settings != self.settings:
            self.forecaster = DemandForecaster(settings)
            self.settings = settings

    def reset(self) -> None:
        """Forget the model (its demand series changed meaning)."""
        self.forecaster = None
        self.settings = None

    def refit_due(self, now: float) -> ForecastSettings | None:
        """The settings to fit a fresh model with, when a refit is due; else None."""
        if self.forecaster is None or self.settings is None:
            return None
        return self.settings if self.forecaster.needs_refit(now) else None

    def swap(self, fresh: DemandForecaster, settings: ForecastSettings) -> bool:
        """Put a model fitted with ``settings`` in use, unless the settings changed while
        it was fitted; True when it was."""
        if settings != self.settings:
            return False
        self.forecaster = fresh
        return True

    def step(
        self, history: DemandSeries | None, now: float
    ) -> tuple[ForecastPoint | None, ForecastReport | None]:
        """Score the model in use on ``history`` and forecast the lead-window peak when it
        is trusted. (None, None) with forecasting off; no point without history."""
        forecaster = self.forecaster
        if forecaster is None:
            return None, None
        if history is None or len(history) == 0:
            return None, forecaster.report
        report = forecaster.observe(history, now)
        point = forecaster.peak(history, now) if report.ready else None
        return point, report
