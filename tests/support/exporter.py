"""A tiny Prometheus exporter for tests: series whose values the test sets.

The implementation lives in the package (the demo serves its fake model-server
metrics with it); this module keeps the tests' import path.
"""

from gpufinops.demo.exposition import Exporter, Value, escape_label_value, format_value

__all__ = ["Exporter", "Value", "escape_label_value", "format_value"]
