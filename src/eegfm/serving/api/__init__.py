"""eegfm-serve's HTTP API: routes (app), uploads and their limits, API keys, metrics, connections."""
