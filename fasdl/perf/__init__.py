"""Performance models shared by the profiler (which measures and fits them) and the optimizer
(which predicts with them): transfer times and the fitted coefficients. Light imports only: no
SciPy, no torch."""
