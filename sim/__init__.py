"""SimPy discrete-event simulator of an LLM engine serving augmented requests."""
