"""``fasdl aws init``: set up AWS Lambda + S3 for ``fasdl train --platform lithops``."""

from __future__ import annotations

import argparse
import json
import sys

from fasdl.cloud.aws import (
    ARCHITECTURES,
    DEFAULT_MEMORY_MB,
    DEFAULT_ROLE_NAME,
    DEFAULT_RUNTIME_NAME,
    AwsSetup,
)
from fasdl.cloud.aws_init import InitReport, run_init
from fasdl.errors import InvalidInput

DESCRIPTION = """\
Set up AWS for `fasdl train --platform lithops`, in one command:

  1. check the credentials (sts:GetCallerIdentity);
  2. create the S3 bucket in --region, unless it exists;
  3. create the IAM execution role, unless it exists: AWS Lambda may assume it; an inline
     policy allows s3:GetObject/PutObject/DeleteObject on the bucket's objects and
     s3:ListBucket on the bucket; AWSLambdaBasicExecutionRole lets it write its logs;
  4. write the Lithops config (--lithops-config; default $LITHOPS_CONFIG_FILE or
     ~/.lithops/config): aws_lambda for compute, aws_s3 on the same bucket for storage;
  5. build the runtime image (AWS's Lambda base image for this Python, CPU torch 2.13.0,
     fasdl, Lithops' handler) and deploy it, with `lithops runtime build` and `lithops runtime deploy`
     (needs Docker; --skip-runtime leaves it for later and prints the commands).

Every step finds what is already there: a second run changes nothing. A Lithops config that
exists with other settings is left alone unless --force. --dry-run prints every step, the
policies, the config and the Dockerfile, and calls nothing (not even AWS).

Credentials come from the usual places (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws). boto3 honours AWS_ENDPOINT_URL, as does --endpoint-url (for an emulator).
"""

# the package's field -> the flag (the subcommand is nested, so main.py cannot find it)
FLAGS = {
    "bucket": "--bucket",
    "region": "--region",
    "role_name": "--role-name",
    "runtime_name": "--runtime-name",
    "architecture": "--arch",
    "memory_mb": "--memory",
    "lithops_config": "--lithops-config",
    "python_version": "Python",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("aws", help="set up AWS Lambda + S3 for --platform lithops")
    aws_sub = p.add_subparsers(dest="aws_command", metavar="COMMAND", parser_class=type(p))
    init = aws_sub.add_parser(
        "init",
        help="create the bucket, the execution role, the Lithops config and the runtime",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("--bucket", required=True, metavar="NAME", help="the S3 bucket")
    init.add_argument("--region", required=True, metavar="R", help="AWS region, e.g. us-east-1")
    init.add_argument(
        "--role-name",
        default=DEFAULT_ROLE_NAME,
        metavar="NAME",
        help=f"the IAM execution role (default: {DEFAULT_ROLE_NAME})",
    )
    init.add_argument(
        "--runtime-name",
        default=DEFAULT_RUNTIME_NAME,
        metavar="NAME",
        help=f"the Lithops runtime (container image) name (default: {DEFAULT_RUNTIME_NAME})",
    )
    init.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default="x86_64",
        help="Lambda architecture (default: x86_64)",
    )
    init.add_argument(
        "--memory",
        type=int,
        default=DEFAULT_MEMORY_MB,
        metavar="MB",
        help=f"the runtime's default memory, 128-10240 MB (default: {DEFAULT_MEMORY_MB})",
    )
    init.add_argument(
        "--lithops-config",
        dest="config_out",  # not `lithops_config`: main.py checks that one exists (--platform)
        metavar="FILE",
        default=None,
        help="the Lithops config to write (default: $LITHOPS_CONFIG_FILE or ~/.lithops/config)",
    )
    init.add_argument(
        "--endpoint-url",
        metavar="URL",
        default=None,
        help="an AWS endpoint for every call (an emulator; AWS_ENDPOINT_URL works too)",
    )
    init.add_argument(
        "--skip-runtime",
        action="store_true",
        help="do not build and deploy the runtime (print the commands instead)",
    )
    init.add_argument(
        "--force",
        action="store_true",
        help="replace a Lithops config that exists with other settings (kept as FILE.bak)",
    )
    init.add_argument(
        "--dry-run", action="store_true", help="print every step and file; touch nothing"
    )
    init.add_argument("--json", action="store_true", help="print the report as JSON")
    init.set_defaults(func=run_aws_init)

    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def run_aws_init(args: argparse.Namespace) -> int:
    try:
        setup = AwsSetup(
            bucket=args.bucket,
            region=args.region,
            role_name=args.role_name,
            runtime_name=args.runtime_name,
            architecture=args.arch,
            memory_mb=args.memory,
            python_version=f"{sys.version_info[0]}.{sys.version_info[1]}",  # Lithops' rule
        )
        report = run_init(
            setup,
            args.config_out,
            dry_run=args.dry_run,
            skip_runtime=args.skip_runtime,
            force=args.force,
            endpoint_url=args.endpoint_url,
        )
    except InvalidInput as e:
        if e.shown_as == e.field and e.field in FLAGS:
            e.named_as(FLAGS[e.field])
        raise
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_report(report))
    return 0


def format_report(report: InitReport) -> str:
    lines = ["dry run: nothing is created or written"] if report.dry_run else []
    lines += [f"{s.name:<12} {s.action}: {s.detail}" for s in report.steps]
    if not report.dry_run and not report.changed:
        lines.append("already set up: nothing changed")
    if report.dry_run:
        for name, text in report.files.items():
            lines += ["", f"--- {name}", text.rstrip("\n")]
    if report.dry_run or any(s.action == "skipped" for s in report.steps):
        lines += [
            "",
            "the runtime (BUILD_CONTEXT: the Dockerfile and fasdl-src/, a copy of fasdl):",
        ]
        lines += [f"  {c}" for c in report.commands]
    lines += ["", f"next: {report.next_command()}"]
    return "\n".join(lines)
