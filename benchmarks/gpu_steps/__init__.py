"""The steps of ``benchmarks/gpu.py`` (one module each: ``stack``, ``pretrain``, ``peers``, ``loader``,
``tensorrt_engine``, ``horovod_smoke``), what they share (``common``) and how their records become the report
(``report``). A folder of its own: ``make bench`` runs every ``benchmarks/*.py`` as a script, and
these are run by ``benchmarks/gpu.py`` only, each in its own process.
"""
