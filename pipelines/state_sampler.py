"""A shorter sampling period for Beam's per-bundle state sampler, on local runs.

Each bundle an SDK harness runs starts a sampling thread (``statesampler_fast``) that sleeps in
steps growing from 2 ms to 200 ms, and the bundle ends by joining that thread: the end of every
long bundle waits up to 200 ms for a thread to wake up. The job's bundles are few and long (the
recordings of a worker, the shard writers), so on the 64 eegmat files this idle wait was 0.15 s of
a 3.1 s run on one worker and 0.25 s of 3.0 s on two. At 10 ms the wait is at most 10 ms; the
sampler thread wakes 100 times a second, which costs nothing measurable, and the per-step
timings Beam keeps from it only get finer.

Beam has no option for the period (``bundle_processor`` builds the sampler with the default
argument), so the default argument itself is changed, in this process and in the warm workers it
forks. Dataflow's workers are not touched.
"""

from __future__ import annotations

import inspect

from eegfm.core.logs import get_logger

log = get_logger("state_sampler")
PERIOD_MS = 10
_BEAM_DEFAULT_MS = 200  # apache_beam.runners.worker.statesampler.DEFAULT_SAMPLING_PERIOD_MS


def shorten_state_sampling(period_ms: int = PERIOD_MS) -> bool:
    """New state samplers sample every ``period_ms``; False (and nothing changed) where Beam's
    ``StateSampler`` no longer has the expected signature."""
    if not isinstance(period_ms, int) or period_ms < 1:
        raise ValueError(f"period_ms: expected an integer >= 1; got {period_ms!r}")
    from apache_beam.runners.worker import statesampler

    init = statesampler.StateSampler.__init__
    parameter = inspect.signature(init).parameters.get("sampling_period_ms")
    if parameter is None or init.__defaults__ is None or len(init.__defaults__) != 1 \
            or init.__defaults__[0] not in (_BEAM_DEFAULT_MS, period_ms) \
            or parameter.default != init.__defaults__[0]:
        log.debug("Beam's StateSampler has another signature (%s); its sampling period is left as it is",
                  inspect.signature(init))
        return False
    init.__defaults__ = (period_ms,)
    return True
