"""The forecaster's cycle the operator and the simulator share: an unfitted model says
why it does not forecast, a refit is due on the model's schedule, a fresh model is put
in use only for the settings it was fitted with, and new settings start over."""

import numpy as np

from gpufinops.core.forecast import DemandSeries, ForecastSettings
from gpufinops.core.forecast.cycle import ForecastCycle
from gpufinops.core.forecast.model import DemandForecaster

NOW = 1_790_000_000.0


def _history(days: float = 1.0) -> DemandSeries:
    start = NOW - days * 86_400
    times = np.arange(start, NOW, 60.0)
    return DemandSeries(start, 60.0, 10 + 5 * np.sin(times / 86_400 * 2 * np.pi))


def test_off_means_no_model_and_no_report() -> None:
    cycle = ForecastCycle()
    cycle.use(None)
    assert cycle.step(_history(), NOW) == (None, None) and cycle.refit_due(NOW) is None


def test_an_unfitted_model_reports_and_asks_for_a_fit() -> None:
    cycle = ForecastCycle()
    settings = ForecastSettings()
    cycle.use(settings)
    point, report = cycle.step(_history(), NOW)
    assert point is None and report is not None and not report.ready
    assert cycle.step(None, NOW)[1] is not None  # no history: still says why
    assert cycle.refit_due(NOW) == settings


def test_a_fresh_model_is_used_only_for_the_settings_it_was_fitted_with() -> None:
    cycle = ForecastCycle()
    first, second = ForecastSettings(), ForecastSettings(quantile=0.95)
    cycle.use(first)
    fresh = DemandForecaster(first)
    cycle.use(second)  # edited meanwhile: a new, unfitted model
    assert not cycle.swap(fresh, first) and cycle.forecaster is not fresh
    mine = DemandForecaster(second)
    assert cycle.swap(mine, second) and cycle.forecaster is mine
    cycle.use(second)  # the same settings again: the model stays
    assert cycle.forecaster is mine
    cycle.reset()
    assert cycle.forecaster is None and cycle.refit_due(NOW) is None
