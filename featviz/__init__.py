"""featviz: turn trained CNNs into a browsable, archived report of what they learned."""

__version__ = "0.1.0"
