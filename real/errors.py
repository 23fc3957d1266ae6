"""The executor's error type, in a module of its own so that the CLI can catch it without importing vLLM."""


class RealRunError(RuntimeError):
    """The engine failed during a real run; nothing was written."""
