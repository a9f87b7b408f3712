"""What every eegfm stage shares: configuration checks (``config``), logging (``logs``), one run
per output folder (``run_lock``) and paths on local disk or object stores (``stores``)."""

__version__ = "0.1.0"
