"""What the forecaster tells the scaler and the status: a verdict and a number."""

from dataclasses import dataclass
from typing import Final

NOT_FITTED: Final = "NotFitted"
INSUFFICIENT_HISTORY: Final = "InsufficientHistory"
WORSE_THAN_SEASONAL_NAIVE: Final = "WorseThanSeasonalNaive"
MODEL_BEATS_BASELINE: Final = "ModelBeatsBaseline"


@dataclass(frozen=True)
class ForecastReport:
    """Whether forecasts may drive scaling; shaped to become a status condition."""

    ready: bool
    reason: str
    """CamelCase condition reason (one of the constants in this module)."""
    message: str
    backtest_ratio: float | None = None
    """Model / seasonal-naive pinball loss of the lead-window peak on the
    holdout at fit time; below 1 the model is the better forecaster."""
    history_seconds: float = 0.0
    fitted_at: float | None = None
    online_ratio: float | None = None
    """Same ratio over the rolling window of forecasts scored after the fact;
    once it has enough samples it decides readiness."""
    online_samples: int = 0


@dataclass(frozen=True)
class ForecastPoint:
    """Demand to provision for now so capacity is there when pods become ready."""

    peak: float
    """Requests/s: the largest quantile forecast over the lead window."""
    horizon_seconds: float
    """How far past ``at`` the forecast reaches."""
    at: float
