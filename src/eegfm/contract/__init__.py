"""The data contract between the stages: what a window is (``schema``, ``record_fields``), how it
travels (``example_wire``: the ``tf.train.Example`` bytes; ``tfrecord``: the file framing), the
canonical channels and their positions (``channels``), a record decoded into a window
(``windows``), the preprocessing a model was trained on (``preprocess_spec``) and every file one
stage writes and another reads (``layout``; a model folder's: ``model_files``). It imports only
``eegfm.core``; every stage imports it.
"""
