"""wsls.data: prepared volumes (brain mask, crop, z-score, resampling with exact inverses), the
on-disk cache of prepared cases, and the patches the classifiers train on.

Files, dataset layouts and cases are :mod:`wsls.io`; the synthetic phantom :mod:`wsls.phantom`;
the trivial baseline :mod:`wsls.baselines`.
"""
