"""One BLAS thread per process for the pipeline's numeric work.

The pipeline's matrix products are small (19 x 19 by 19 x n channel maps, the artifact
autoencoder's 64-unit layers) and memory bound, and the job is parallel across recordings
already: Beam runs one worker process per core (``--direct_num_workers``, Dataflow's SDK
processes). A threaded BLAS in each of them only adds threads that spin while waiting for work:
on 2 cores, 2 ``multi_processing`` workers each with 2 OpenBLAS threads took the 64 eegmat
recordings from 1.9 s to 5.7 s; one process alone runs as fast with one thread as with two.
"""

from __future__ import annotations

import contextlib


def single_threaded_blas() -> contextlib.AbstractContextManager:
    """Limit every loaded BLAS (numpy's and scipy's OpenBLAS, MKL) to one thread: at once, and
    until the returned object's ``restore_original_limits()`` or the end of its ``with`` block.
    threadpoolctl is optional; without it BLAS keeps its defaults."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")
