"""eegfm preprocessing: channel vocabulary, configuration, the simulator and (soon) the Beam job.

`pipelines.channels` owns the channel vocabulary, `pipelines.config` the configuration pattern,
`pipelines.simulate` the built-in multi-site corpus, `pipelines.schema` the TFRecord contract.
"""

__version__ = "0.1.0"
