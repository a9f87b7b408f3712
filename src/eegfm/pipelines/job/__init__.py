"""The preprocessing job: its options and config, the per-recording core, the Beam stages and sinks,
the manifest, progress, and how a local run is laid out across processes."""
