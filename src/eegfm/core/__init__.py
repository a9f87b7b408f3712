"""What every eegfm stage shares: configuration checks (``config``), logging (``logs``), one run
per output folder (``run_lock``), a job's processes ended together (``process_tree``), paths on
local disk or object stores (``stores``) and the CPU cores a command may use (``machine``)."""

__version__ = "0.1.0"
