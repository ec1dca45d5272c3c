"""wsls.method: the per-volume method, in the order of the paper's figure 1.

``config`` (every setting), ``coarse`` (the classifier's view), ``windows`` and ``maps`` (CAM and
ACAM over a volume), ``intensity`` (the Gaussian mixture with the ACAM as prior), ``confident``
(the voxels that train the representation), ``seeds``, ``embedding`` (f_R over a volume),
``regions`` (affinity region growing, scoring, NMS), ``postprocess``, ``segment``
(:func:`~wsls.method.segment.segment_volume`: all of it on one prepared volume) and ``trained``
(the trained networks and their bundle). Training imports this package, never the reverse.
"""
