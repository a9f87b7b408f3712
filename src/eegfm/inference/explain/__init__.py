"""Why a model gave its answer for one window: integrated gradients per class and the encoder's
attention (``explain.attribution``, ``explain.attention``), with the checks that an explanation
depends on the model and the class (``explain.checks``). The command line, the report and the
figure are serving's (``serving.explain``)."""
