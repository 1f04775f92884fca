"""The optimizer: the cheapest K-Reduce configuration that meets a deadline, from fitted coefficients.

coeffs = load_coefficients("coeffs.json")
scenario = Scenario(coeffs=coeffs, prices=load_prices("aws"), samples=50_000, epochs=10)
plan = optimize(scenario, load_transfer("aws"), deadline_s=4 * 3600)
plan.to_dict()  # the JSON that `fasdl train --plan` reads
"""

from fasdl.optimizer.coeffs import Coefficients, coefficients_from_dict, load_coefficients
from fasdl.optimizer.grid import memory_grid, predict, transfer_grid
from fasdl.optimizer.model import Evaluation, Prediction, Scenario, batch_size_agg, evaluate
from fasdl.optimizer.plan import NoPlan, Plan, optimize, pattern_frontiers, search_space
from fasdl.optimizer.prices import Prices, load_prices, prices_from_dict
from fasdl.optimizer.search import Frontier, SearchResult, search

__all__ = [
    "Coefficients",
    "Evaluation",
    "Frontier",
    "NoPlan",
    "Plan",
    "Prediction",
    "Prices",
    "Scenario",
    "SearchResult",
    "batch_size_agg",
    "coefficients_from_dict",
    "evaluate",
    "load_coefficients",
    "load_prices",
    "memory_grid",
    "optimize",
    "pattern_frontiers",
    "predict",
    "prices_from_dict",
    "search",
    "search_space",
    "transfer_grid",
]
