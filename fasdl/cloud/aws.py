"""The pure parts of ``fasdl aws init``: names and their checks, the IAM policies, the Lithops
config, the runtime's Dockerfile and the Lithops command lines. No I/O: ``aws_init`` does that.

Key names follow Lithops 3.8 (``lithops/serverless/backends/aws_lambda/config.py`` and
``lithops/storage/backends/aws_s3/config.py``): ``aws.region``, ``aws_lambda.execution_role``
(required), ``runtime``, ``runtime_memory``, ``runtime_timeout``, ``architecture``, and
``aws_s3.storage_bucket``.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fasdl import __version__
from fasdl.errors import InvalidInput
from fasdl.validate import whole_number

TORCH_VERSION = "2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# AWS's Lambda base image for the Python of the client: Lithops refuses a runtime whose Python
# (major.minor) differs from the client's.
BASE_IMAGE = "public.ecr.aws/lambda/python"
PYTHON_VERSIONS = ("3.10", "3.11", "3.12", "3.13", "3.14")  # Lithops 3.8's AWS Lambda runtimes
DEFAULT_PYTHON = "3.11"
# Lithops' AWS Lambda entry point, as its runtime Dockerfiles name it: `lithops runtime build`
# puts lithops_lambda.zip (entry_point.py + the lithops package) in the build context, and the
# image moves entry_point.py into a package `handler`.
LITHOPS_HANDLER = "handler.entry_point.lambda_handler"
LITHOPS_ZIP = "lithops_lambda.zip"
# What Lithops' worker imports besides lithops itself (its aws_lambda DEFAULT_REQUIREMENTS, and
# boto3 for S3); numpy, psutil and boto3 come with fasdl anyway.
LITHOPS_WORKER_PACKAGES = (
    "cloudpickle",
    "ps-mem",
    "tblib",
    "psutil",
    "requests",
    "redis",
    "pika",
    "urllib3<2",
    "boto3",
)
SOURCE_DIR = "fasdl-src"  # the copy of fasdl's source tree in the build context
ARCHITECTURES = ("x86_64", "arm64")
DOCKER_PLATFORMS = {"x86_64": "linux/amd64", "arm64": "linux/arm64"}
BASIC_EXECUTION_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
RUNTIME_TIMEOUT_S = 900
DEFAULT_ROLE_NAME = "fasdl-lithops-execution"
DEFAULT_RUNTIME_NAME = f"fasdl-runtime:{__version__}"
DEFAULT_MEMORY_MB = 1769  # one vCPU on Lambda

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ROLE = re.compile(r"^[\w+=,.@-]{1,64}$")
_RUNTIME = re.compile(
    r"^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[\w][\w.-]{0,127})?$"
)


@dataclass(frozen=True)
class AwsSetup:
    """What ``fasdl aws init`` sets up; every field checked on construction."""

    bucket: str
    region: str
    role_name: str = DEFAULT_ROLE_NAME
    runtime_name: str = DEFAULT_RUNTIME_NAME
    architecture: str = "x86_64"
    memory_mb: int = DEFAULT_MEMORY_MB
    python_version: str = DEFAULT_PYTHON

    def __post_init__(self) -> None:
        b = self.bucket
        if not _BUCKET.match(b) or ".." in b or _IP.match(b) or b.startswith("xn--"):
            raise InvalidInput(
                "bucket",
                f"{b!r} is not a valid S3 bucket name",
                "3-63 characters: lowercase letters, digits, '.' and '-', starting and ending "
                "with a letter or digit",
            )
        if not _REGION.match(self.region):
            raise InvalidInput("region", f"{self.region!r} is not an AWS region", "e.g. us-east-1")
        if not _ROLE.match(self.role_name):
            raise InvalidInput(
                "role_name",
                f"{self.role_name!r} is not a valid IAM role name",
                "1-64 characters: letters, digits and +=,.@_-",
            )
        if not _RUNTIME.match(self.runtime_name):
            raise InvalidInput(
                "runtime_name",
                f"{self.runtime_name!r} is not a valid container image name",
                "lowercase, e.g. fasdl-runtime:0.1.0",
            )
        if self.architecture not in ARCHITECTURES:
            raise InvalidInput(
                "architecture", f"{self.architecture!r} is not one of {', '.join(ARCHITECTURES)}"
            )
        whole_number(self.memory_mb, "memory_mb", minimum=128, maximum=10240, unit="MB")
        if self.python_version not in PYTHON_VERSIONS:
            raise InvalidInput(
                "python_version",
                f"Python {self.python_version} has no Lithops runtime on AWS Lambda",
                f"run fasdl with Python {', '.join(PYTHON_VERSIONS)}",
            )

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket}"

    @property
    def inline_policy_name(self) -> str:
        """One inline policy per bucket, so that one role can serve several buckets."""
        return f"fasdl-s3-{self.bucket}"[:128]

    def role_arn(self, account: str) -> str:
        return f"arn:aws:iam::{account}:role/{self.role_name}"


# -- IAM ----------------------------------------------------------------------------------------
def trust_policy() -> dict[str, Any]:
    """Who may assume the execution role: AWS Lambda, and nothing else."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def bucket_policy(bucket: str) -> dict[str, Any]:
    """The role's inline policy: read, write and delete the objects of ``bucket``, list it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "FasdlObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/*",
            },
            {
                "Sid": "FasdlList",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
            },
        ],
    }


def same_policy(a: Mapping[str, Any] | str, b: Mapping[str, Any] | str) -> bool:
    """Whether two policy documents say the same (IAM returns them URL-decoded or as dicts,
    with single actions as strings or lists)."""

    def norm(doc: Any) -> Any:
        if isinstance(doc, dict):
            return {k: norm(v) for k, v in doc.items()}
        if isinstance(doc, list):
            items = [norm(v) for v in doc]
            return items[0] if len(items) == 1 else sorted(items, key=json.dumps)
        return doc

    def load(doc: Mapping[str, Any] | str) -> Any:
        return json.loads(doc) if isinstance(doc, str) else doc

    return bool(norm(load(a)) == norm(load(b)))


# -- the Lithops config -------------------------------------------------------------------------
def lithops_config(setup: AwsSetup, role_arn: str) -> dict[str, dict[str, Any]]:
    """The Lithops configuration: AWS Lambda for compute, S3 (the same bucket) for storage."""
    return {
        "lithops": {"backend": "aws_lambda", "storage": "aws_s3"},
        "aws": {"region": setup.region},
        "aws_lambda": {
            "execution_role": role_arn,
            "runtime": setup.runtime_name,
            "runtime_memory": setup.memory_mb,
            "runtime_timeout": RUNTIME_TIMEOUT_S,
            "architecture": setup.architecture,
        },
        "aws_s3": {"storage_bucket": setup.bucket},
    }


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"no YAML for {value!r}")
    if isinstance(value, int):
        return str(value)
    if re.fullmatch(r"[A-Za-z_][\w.-]*", value) and value.lower() not in (
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "null",
        "y",
        "n",
    ):
        return value
    return json.dumps(value)  # a double-quoted YAML string


def lithops_config_text(setup: AwsSetup, role_arn: str, path: str = "") -> str:
    """The config as YAML (two levels of plain keys: no YAML library needed to write it)."""
    lines = [
        f"# Lithops on AWS Lambda + S3, written by `fasdl aws init` (fasdl {__version__}).",
        "# Train with: fasdl train --platform lithops"
        + (f" --lithops-config {shlex.quote(path)}" if path else "")
        + f" --store s3://{setup.bucket}/runs ...",
    ]
    for section, values in lithops_config(setup, role_arn).items():
        lines.append(f"{section}:")
        lines.extend(f"  {k}: {_yaml_scalar(v)}" for k, v in values.items())
    return "\n".join(lines) + "\n"


def config_differences(
    existing: Mapping[str, Any], wanted: Mapping[str, Mapping[str, Any]]
) -> list[str]:
    """The ``section.key`` of ``wanted`` that ``existing`` (a parsed config) lacks or sets
    otherwise; keys only in ``existing`` (the user's own) are fine."""
    out = []
    for section, values in wanted.items():
        have = existing.get(section)
        have = have if isinstance(have, Mapping) else {}
        for k, v in values.items():
            if have.get(k) != v:
                out.append(f"{section}.{k} (is {have.get(k)!r}, want {v!r})")
    return out


# -- the runtime --------------------------------------------------------------------------------
def dockerfile(architecture: str = "x86_64", python_version: str = DEFAULT_PYTHON) -> str:
    """The Lithops container runtime for AWS Lambda: AWS's Python base image, our pinned CPU
    torch, Lithops' worker dependencies, fasdl, and Lithops' handler.

    The build context (``fasdl aws init`` assembles it) holds this file, ``fasdl-src/`` (fasdl's
    source tree) and ``lithops_lambda.zip``, which ``lithops runtime build`` writes there.
    ``lithops runtime build`` always passes ``--platform=linux/amd64``; the platform on ``FROM``
    sets the image's architecture whatever the CLI says (arm64 needs an arm64 host or QEMU).
    """
    platform = DOCKER_PLATFORMS[architecture]
    packages = " ".join(shlex.quote(p) for p in LITHOPS_WORKER_PACKAGES)
    return f"""\
# The fasdl runtime for AWS Lambda ({architecture}, Python {python_version}), built by `fasdl aws init` through
# `lithops runtime build -f Dockerfile -b aws_lambda NAME`. Build context: this file,
# {SOURCE_DIR}/ (fasdl's source tree) and {LITHOPS_ZIP} (written there by Lithops).
FROM --platform={platform} {BASE_IMAGE}:{python_version}

# PyTorch, CPU build, pinned (PyPI's Linux wheel is the CUDA one, GB larger).
RUN pip install --no-cache-dir --index-url {TORCH_CPU_INDEX} torch=={TORCH_VERSION}

# What Lithops' worker imports besides lithops itself.
RUN pip install --no-cache-dir {packages}

# fasdl (its torch==2.13.0 requirement is met by the CPU build above).
COPY {SOURCE_DIR} /tmp/{SOURCE_DIR}
RUN pip install --no-cache-dir /tmp/{SOURCE_DIR} && rm -rf /tmp/{SOURCE_DIR}

# Lithops' handler: entry_point.py and the lithops package, from {LITHOPS_ZIP}.
WORKDIR ${{LAMBDA_TASK_ROOT}}
COPY {LITHOPS_ZIP} ${{LAMBDA_TASK_ROOT}}/
RUN python3 -m zipfile -e {LITHOPS_ZIP} . \\
    && rm {LITHOPS_ZIP} \\
    && mkdir handler \\
    && touch handler/__init__.py \\
    && mv entry_point.py handler/

CMD [ "{LITHOPS_HANDLER}" ]
"""


def build_command(setup: AwsSetup, config_path: str) -> list[str]:
    """``lithops runtime build``, to be run in the build context (it builds ``.``)."""
    return [
        "lithops",
        "runtime",
        "build",
        "-f",
        "Dockerfile",
        "-b",
        "aws_lambda",
        "-c",
        config_path,
        setup.runtime_name,
    ]


def deploy_command(setup: AwsSetup, config_path: str) -> list[str]:
    """``lithops runtime deploy``: the Lambda function for ``setup.memory_mb`` (Lithops deploys
    one per memory size; it adds others when a job asks for them)."""
    return [
        "lithops",
        "runtime",
        "deploy",
        "-b",
        "aws_lambda",
        "-c",
        config_path,
        "--memory",
        str(setup.memory_mb),
        "--timeout",
        str(RUNTIME_TIMEOUT_S),
        setup.runtime_name,
    ]


def shell_line(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)
