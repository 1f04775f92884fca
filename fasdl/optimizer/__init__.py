"""The optimizer: the cheapest K-Reduce configuration that meets a deadline, from fitted coefficients.

from fasdl.perf.coefficients import read_coefficients
from fasdl.perf.transfer import load_transfer
from fasdl.pricing import load_prices

coeffs = read_coefficients("coeffs.json")
scenario = Scenario(coeffs=coeffs, prices=load_prices("aws"), samples=50_000, epochs=10)
plan = optimize(scenario, load_transfer("aws"), deadline_s=4 * 3600)
plan.to_dict()  # the JSON that `fasdl train --plan` reads
"""

from fasdl.errors import NoPlan
from fasdl.optimizer.grid import memory_grid, predict, transfer_grid
from fasdl.optimizer.model import Evaluation, Prediction, Scenario, batch_size_agg, evaluate
from fasdl.optimizer.plan import Plan, optimize, pattern_frontiers, search_space
from fasdl.optimizer.search import Frontier, SearchResult, search

__all__ = [
    "Evaluation",
    "Frontier",
    "NoPlan",
    "Plan",
    "Prediction",
    "Scenario",
    "SearchResult",
    "batch_size_agg",
    "evaluate",
    "memory_grid",
    "optimize",
    "pattern_frontiers",
    "predict",
    "search",
    "search_space",
    "transfer_grid",
]
