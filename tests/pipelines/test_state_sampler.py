import time

import pytest
from apache_beam.runners.worker import statesampler
from apache_beam.utils.counters import CounterFactory

from eegfm.pipelines.state_sampler import shorten_state_sampling


@pytest.fixture
def beam_default():
    """Leaves Beam's sampler as it found it (other tests run Beam in this process)."""
    saved = statesampler.StateSampler.__init__.__defaults__
    yield saved
    statesampler.StateSampler.__init__.__defaults__ = saved


def test_samplers_built_as_beam_builds_them_use_the_short_period(beam_default):
    assert shorten_state_sampling(10) is True
    sampler = statesampler.StateSampler("fnapi-step-1", CounterFactory())  # as bundle_processor does
    assert sampler.sampling_period_ms == 10
    # It still samples: time spent in a state is counted.
    state = sampler.scoped_state("step", "process")
    sampler.start()
    with state:
        time.sleep(0.1)
    sampler.stop()
    assert state.sampled_msecs_int() > 0
    assert shorten_state_sampling(10) is True  # applying it twice is harmless


def test_refuses_a_period_below_one_ms(beam_default):
    with pytest.raises(ValueError, match="period_ms: expected an integer >= 1; got 0"):
        shorten_state_sampling(0)
    assert statesampler.StateSampler.__init__.__defaults__ == beam_default


def test_leaves_an_unexpected_signature_alone(beam_default):
    statesampler.StateSampler.__init__.__defaults__ = (1234,)  # as if Beam changed its default
    assert shorten_state_sampling(10) is False
    assert statesampler.StateSampler.__init__.__defaults__ == (1234,)
