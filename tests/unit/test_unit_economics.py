"""Unit costs: the spend rate shared between input and output tokens, and per request."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpufinops.core.cost.unit_economics import ServedRates, UnitCosts, unit_costs

rates = st.floats(min_value=1e-3, max_value=1e5)


@settings(max_examples=200, deadline=None)
@given(usd=st.floats(0.01, 1000.0), inputs=rates, outputs=rates, weight=st.floats(0.5, 10.0))
def test_input_and_output_costs_add_up_to_the_spend(
    usd: float, inputs: float, outputs: float, weight: float
) -> None:
    costs = unit_costs(usd, ServedRates(inputs, outputs, None), weight)
    assert costs.per_million_input_tokens is not None
    assert costs.per_million_output_tokens is not None
    spent = inputs * costs.per_million_input_tokens + outputs * costs.per_million_output_tokens
    assert spent / 1e6 * 3600 == pytest.approx(usd)
    assert costs.per_million_output_tokens == pytest.approx(weight * costs.per_million_input_tokens)


def test_what_is_not_served_or_not_spent_has_no_unit_cost() -> None:
    assert unit_costs(0.0, ServedRates(10, 10, 1), 4) == UnitCosts()
    only_requests = unit_costs(3.6, ServedRates(None, None, 0.5), 4)
    assert only_requests == UnitCosts(None, None, None, 0.002)  # Triton: no token counters
    nothing = unit_costs(3.6, ServedRates(0.0, 0.0, 0.0), 4)
    assert nothing == UnitCosts()  # idle: no figure, never a division by zero
    # An engine that counts only generated tokens: every token is an output token.
    outputs_only = unit_costs(3.6, ServedRates(None, 1.0, None), 4)
    assert outputs_only.per_million_output_tokens == pytest.approx(1e6 * 0.001)
