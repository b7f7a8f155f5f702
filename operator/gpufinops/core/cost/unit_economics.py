"""What a served token and a request cost, from the spend rate and what was served.

A GPU-hour serves prompt (input) and generated (output) tokens at once, so their
costs are a split of one spend, not two measurements. API providers price an
output token several times an input token (decoding is sequential, prefill is
parallel); ``output_weight`` is that ratio, and the spend is shared so that an
output token costs ``output_weight`` input tokens. The per-request cost needs no
split. Both bases of OpenCost: ``allocation`` charges every GPU-hour held,
``usage`` only the share the GPUs were busy.
"""

from dataclasses import astuple, dataclass


@dataclass(frozen=True)
class ServedRates:
    """Per second, over the same window: what a workload's pods served."""

    input_tokens: float | None = None
    output_tokens: float | None = None
    requests: float | None = None

    @property
    def tokens(self) -> float | None:
        if self.input_tokens is None and self.output_tokens is None:
            return None
        return (self.input_tokens or 0.0) + (self.output_tokens or 0.0)


@dataclass(frozen=True)
class UnitCosts:
    """USD per million tokens (all, input, output) and per request; None: unknown."""

    per_million_tokens: float | None = None
    per_million_input_tokens: float | None = None
    per_million_output_tokens: float | None = None
    per_request: float | None = None

    def scaled(self, share: float) -> "UnitCosts":
        return UnitCosts(*(None if v is None else v * share for v in astuple(self)))


def unit_costs(usd_per_hour: float, served: ServedRates, output_weight: float) -> UnitCosts:
    """Allocation-basis unit costs of one workload now (nothing spent or served: None)."""
    if usd_per_hour <= 0:
        return UnitCosts()
    usd_per_second = usd_per_hour / 3600.0
    tokens = served.tokens
    per_million = usd_per_second / tokens * 1e6 if tokens else None
    inputs, outputs = served.input_tokens or 0.0, served.output_tokens or 0.0
    weighted = inputs + output_weight * outputs
    per_input = usd_per_second / weighted * 1e6 if served.tokens and weighted > 0 else None
    per_output = per_input * output_weight if per_input is not None else None
    per_request = usd_per_second / served.requests if served.requests else None
    return UnitCosts(per_million, per_input, per_output, per_request)
