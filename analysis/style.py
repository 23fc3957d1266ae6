"""One look for every figure: a colour and marker per policy."""

POLICY_STYLE: dict[str, dict[str, str]] = {
    "discard": {"color": "#d62728", "marker": "v"},
    "improved_discard": {"color": "#ff7f0e", "marker": "^"},
    "preserve": {"color": "#2ca02c", "marker": "s"},
    "swap": {"color": "#9467bd", "marker": "D"},
    "infercept": {"color": "#1f77b4", "marker": "o"},
}
