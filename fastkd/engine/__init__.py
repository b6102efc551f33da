"""The training engine: it runs whatever method the run was built with, knowing none by name.

``trainer`` (the loop, evaluation, checkpoints and resume), ``steps`` (the `StepContext` a method trains through
and the `Learner`: model + optimizer), ``runtime`` (device, precision, compile and layout, decided once),
``distributed`` (torchrun: the rank's rows, summed gradients and batch-norm statistics), ``replay`` (the
(indices, seed) log), ``checkpoint``, ``metrics``, ``loggers`` and ``nonfinite``. Import the submodule you need.
"""
