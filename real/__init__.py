"""The real executor: the project's policies inside vLLM's scheduler (imports vllm; keep out of core/)."""
