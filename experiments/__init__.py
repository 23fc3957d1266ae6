"""The `infercept` command and experiment sweeps."""
