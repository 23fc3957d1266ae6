"""Pure policy, workload, cost and metrics code shared by the simulator and the real executor."""
