"""gacd_core: robust model compression in plain PyTorch.

Models (:mod:`gacd_core.models`), data (:mod:`gacd_core.data`), attacks (:mod:`gacd_core.attacks`),
methods (:mod:`gacd_core.methods`), the trainer (:mod:`gacd_core.trainer`), evaluation
(:mod:`gacd_core.evaluation`), reports (:mod:`gacd_core.report`) and whole jobs
(:mod:`gacd_core.jobs`). The job specification (:mod:`gacd_core.spec`) imports without torch.
"""

__version__ = "0.1.0"
