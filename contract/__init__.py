"""The data contract between the stages: what a window is (``schema``, ``record_fields``), how it
travels (``example_wire``: the ``tf.train.Example`` bytes; ``tfrecord``: the file framing), the
canonical channels and their positions (``channels``) and every file one stage writes and another
reads (``layout``). It imports only ``eegfm.core``; every stage imports it.
"""
