"""The profiler: measure a model on a platform, then fit the coefficients the optimizer needs.

- ``records``: the profile file (``ProfileSample``, ``read_profile``, ``append_sample``);
- ``fit``: the least-squares fit of T_train = a·(B + b)/(M + m) and T_trans = k1·M^k2 (pure);
- ``fit_transfer``: latency + size/bandwidth per memory size against table interpolation (pure);
- ``fit_report``: the fitting stage end to end, to ``fasdl.perf.coefficients`` (coeffs.json);
  ``plot``: its figure.

Nothing is imported here, so that a function importing ``records`` does not pay for scipy.
"""
