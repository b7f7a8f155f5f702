"""The forecaster settings come from the API in one place, for the operator and the
simulator alike."""

from gpufinops.api.inference import Forecast
from gpufinops.core.forecast import ForecastSettings
from gpufinops.sim.policies import CorePolicy, default_spec
from gpufinops.sim.service import ServiceModel


def test_the_spec_sets_quantile_lead_time_and_history() -> None:
    settings = ForecastSettings.from_spec(
        Forecast(quantile=0.95, lead_time_seconds=600, history_days=14)
    )
    assert (settings.quantile, settings.lead_time_seconds, settings.history_days) == (
        0.95, 600.0, 14.0
    )  # fmt: skip
    # A lead time of 0 still forecasts one step ahead (the API allows 0).
    assert ForecastSettings.from_spec(Forecast(lead_time_seconds=0)).lead_time_seconds == 1.0


def test_the_simulated_core_uses_the_same_settings() -> None:
    spec = default_spec(ServiceModel(capacity_per_replica=2.0), forecast=True)
    assert CorePolicy("gpufinops", spec).forecast_settings == ForecastSettings.from_spec(
        spec.forecast
    )
