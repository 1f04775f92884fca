"""The function-platform flags every command that runs functions shares (not a subcommand).

``--platform local|inline|lithops`` and, for Lithops, ``--backend NAME`` and ``--lithops-config
FILE``. The Lithops options reach the platform wherever a library function opens it (the
coordinator, the profiler, the smoke runner) through the environment variables the Lithops
adapter reads (``FASDL_LITHOPS_BACKEND``, ``FASDL_LITHOPS_CONFIG``): ``main.py`` calls
``apply_platform_flags`` before any command runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from fasdl.errors import InvalidInput
from fasdl.platform.base import PLATFORMS
from fasdl.platform.lithops import BACKEND_ENV, CONFIG_ENV, import_lithops  # lithops lazily

PLATFORM_CHOICES = sorted(PLATFORMS)


def add_platform_flags(
    p: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    default: str | None,
    help: str,
) -> None:
    """``--platform`` (with ``default`` and ``help``), ``--backend`` and ``--lithops-config``."""
    p.add_argument("--platform", choices=PLATFORM_CHOICES, default=default, help=help)
    p.add_argument(
        "--backend",
        metavar="NAME",
        help="with --platform lithops: Lithops' compute backend (localhost, aws_lambda, "
        "gcp_functions, azure_functions, code_engine, knative, ...; default: the config's, "
        "or localhost without one)",
    )
    p.add_argument(
        "--lithops-config",
        metavar="FILE",
        help="with --platform lithops: the Lithops config file (default: LITHOPS_CONFIG_FILE, "
        "./.lithops_config or ~/.lithops/config; none is needed for --backend localhost)",
    )


def apply_platform_flags(args: argparse.Namespace) -> None:
    """Check the Lithops flags and hand them to the adapter (through its environment variables)."""
    platform: Any = getattr(args, "platform", None)
    backend = getattr(args, "backend", None)
    config = getattr(args, "lithops_config", None)
    if platform == "lithops":
        import_lithops()  # InvalidInput with the install hint, before anything runs
    if (backend or config) and platform not in (None, "lithops"):
        what = "--backend" if backend else "--lithops-config"
        raise InvalidInput("platform", f"{what} is for --platform lithops, not {platform}")
    if config is not None:
        if not Path(config).is_file():
            raise InvalidInput("lithops_config", f"{config} is not a file")
        os.environ[CONFIG_ENV] = str(Path(config).resolve())
    if backend is not None:
        os.environ[BACKEND_ENV] = backend
