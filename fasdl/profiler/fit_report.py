"""The fitting stage end to end: read a profile (and a transfer profile), fit, and say where
every number in coeffs.json came from. ``fasdl fit`` is a thin wrapper around ``fit_files``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fasdl import __version__
from fasdl.perf.coefficients import Coefficients
from fasdl.perf.transfer import PRESETS, read_transfer_csv
from fasdl.profiler.fit import F_SCALE, LOSS, FitStats, ProfileFit, fit_job, fit_profile
from fasdl.profiler.fit_transfer import TransferChoice, fit_transfer
from fasdl.profiler.records import Profile, read_profile
from fasdl.validate import positive_number

POOR_R2 = 0.9  # below this the model explains the profile too poorly to plan with


@dataclass(frozen=True)
class FitReport:
    profile: Profile
    fit: ProfileFit
    coeffs: Coefficients
    transfer: TransferChoice | None  # None for a preset or no transfer profile
    transfer_source: str | None
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """What ``fasdl fit --json`` prints."""
        return {
            "profile": self.profile.source,
            "train": {
                "a": self.coeffs.a,
                "b": self.coeffs.b,
                "m": self.coeffs.m,
                **self.fit.train.stats.to_dict(),
            },
            "trans": {"k1": self.coeffs.k1, "k2": self.coeffs.k2, **self.fit.trans.stats.to_dict()},
            "runs_used": self.fit.runs_used,
            "runs_skipped": self.fit.runs_skipped,
            "model": self.profile.model or None,
            "model_size_mb": self.coeffs.model_size_mb,
            "num_params": self.coeffs.num_params,
            "min_memory_mb": self.coeffs.min_memory_mb,
            "max_memory_mb": self.coeffs.max_memory_mb,
            "job": {
                "startup_fixed_s": self.coeffs.startup_fixed_s,
                "startup_cpu_s": self.coeffs.startup_cpu_s,
                "load_cpu_s_per_sample": self.coeffs.load_cpu_s_per_sample,
                "train_cv": self.coeffs.train_cv,
                "train_cv_cpu": self.coeffs.train_cv_cpu,
                "eval_s_per_sample": self.coeffs.eval_s_per_sample,
                "eval_fixed_s": self.coeffs.eval_fixed_s,
                "data_upload_s": self.coeffs.data_upload_s,
                "cpu_period_s": self.coeffs.cpu_period_s,
            },
            "transfer": self.coeffs.provenance.get("transfer"),
            "warnings": list(self.warnings),
        }


def fit_files(
    profile_path: str | Path,
    *,
    transfer: str | None = None,
    model_size_mb: float | None = None,
    num_params: int | None = None,
    now: datetime | None = None,
) -> FitReport:
    """Fit the profile at ``profile_path``; ``transfer`` is a preset name (``aws``) or a transfer CSV.

    ``model_size_mb`` and ``num_params`` override what the profile records (the seed's
    profiling.txt records neither).
    """
    profile = read_profile(profile_path)
    fit = fit_profile(profile.samples)
    job = fit_job(profile.samples)
    warnings: list[str] = []

    size, size_from = _pick(
        "model_size_mb", model_size_mb, profile.model_size_mb, "--model-size-mb", warnings
    )
    params, params_from = _pick(
        "num_params", num_params, profile.num_params, "--num-params", warnings
    )
    if size is None:
        warnings.append(
            "model_size_mb is unknown (the profile does not record it): coeffs.json gets null, and the "
            "optimizer needs it; give --model-size-mb"
        )
    for name, stats in (("train", fit.train.stats), ("trans", fit.trans.stats)):
        warnings += _stats_warnings(name, stats)

    provenance: dict[str, Any] = {
        "fitted_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "fasdl_version": __version__,
        "profile": {
            **_file_facts(Path(profile_path)),
            "format": profile.format,
            "runs": len(profile.samples),
            "runs_used": fit.runs_used,
            "runs_skipped": fit.runs_skipped,
            "model": profile.model or None,
        },
        "train": {"model": "a*(B + b)/(M + m)", "method": _METHOD, **fit.train.stats.to_dict()},
        "trans": {"model": "k1*M**k2", "method": _METHOD, **fit.trans.stats.to_dict()},
        "model_size_mb": size_from,
        "num_params": params_from,
        "min_memory_mb": "profile" if profile.min_memory_mb is not None else None,
        "max_memory_mb": "profile" if profile.max_memory_mb is not None else None,
        "job": {
            "startup": "startup_fixed_s + startup_cpu_s / vCPUs(M), least squares over "
            f"{job.startup_points} runs",
            "load_cpu_s_per_sample": "mean over the runs of the function's load of its data "
            "(get, decode, copy) per sample, times min(1, vCPUs(M))",
            "train_cv": "train_cv + train_cv_cpu / vCPUs(M), least squares over the runs' "
            "std/mean of single training iterations",
            "eval_s_per_sample": "median over the runs of the driver's forward pass per sample",
            "eval_fixed_s": "median over the runs of the driver's cold evaluation beyond the "
            "per-sample passes (model build, weight load, first pass)",
            "data_upload_s": "median over the runs of the driver's encoding and put of the "
            "training set",
            "cpu_period_s": "the period the platform said it hands out CPU shares in (median)",
        },
    }
    transfer_dict, choice = None, None
    if transfer is not None:
        if transfer in PRESETS:
            transfer_dict = {"kind": "preset", "name": transfer}
            provenance["transfer"] = {"source": f"preset:{transfer}", "chosen": "table"}
        else:
            rows = read_transfer_csv(transfer)
            choice = fit_transfer(rows, source=transfer)
            transfer_dict = choice.model.to_dict()
            provenance["transfer"] = {**_file_facts(Path(transfer)), **choice.summary()}

    coeffs = Coefficients(
        a=fit.train.a,
        b=fit.train.b,
        m=fit.train.m,
        k1=fit.trans.k1,
        k2=fit.trans.k2,
        model_size_mb=size,
        num_params=params,
        min_memory_mb=profile.min_memory_mb,
        max_memory_mb=profile.max_memory_mb,
        **job.coefficients(),
        transfer=transfer_dict,
        provenance=provenance,
    )
    return FitReport(profile, fit, coeffs, choice, transfer, tuple(warnings))


_METHOD = f"scipy least_squares, {LOSS} loss on relative residuals, f_scale {F_SCALE}"


def _pick(
    name: str, flag: Any, recorded: Any, flag_name: str, warnings: list[str]
) -> tuple[Any, str | None]:
    if flag is not None:
        positive_number(flag, flag_name)
        if recorded is not None and recorded != flag:
            warnings.append(f"{flag_name} {flag:g} overrides the profile's {name} {recorded:g}")
        return flag, flag_name
    if recorded is not None:
        return recorded, "profile"
    return None, None


def _stats_warnings(name: str, stats: FitStats) -> list[str]:
    out = [
        f"{name}: {coeff} ended on its bound, so the profile does not determine it; "
        "profile a wider range of memory and batch sizes"
        for coeff in stats.at_bounds
    ]
    if stats.r2 == stats.r2 and stats.r2 < POOR_R2:  # NaN (all times equal) is not a poor fit
        out.append(
            f"{name}: R² {stats.r2:.3f} is poor; the model does not describe this profile well"
        )
    if stats.loo_points < stats.points:
        out.append(
            f"{name}: only {stats.loo_points} of {stats.points} points could be left out "
            "(the rest would be too few to fit)"
        )
    return out


def _file_facts(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return {
        "path": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "modified_at": modified.isoformat(timespec="seconds"),
    }
