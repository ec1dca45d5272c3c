"""wsls.baselines: what the method is compared with at inference: the trivial FLAIR threshold
(:mod:`~wsls.baselines.threshold`) and the U-Nets' probability maps (:mod:`~wsls.baselines.unet`).
The CAM(GAP) and CAM(GMP) maps come from :mod:`wsls.method.maps` like the ACAM."""
