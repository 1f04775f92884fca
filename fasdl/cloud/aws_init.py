"""``fasdl aws init``'s steps: check the credentials, create the bucket and the execution role
when they are missing, write the Lithops config, build and deploy the runtime with Lithops.

Each step finds what is already there and changes nothing that is right (a second run reports
every step as ``exists``/``unchanged``). With ``dry_run`` nothing is called at all: no AWS
client is even created, and the report holds every step, policy, file and command line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fasdl
from fasdl.cloud.aws import (
    BASIC_EXECUTION_POLICY_ARN,
    SOURCE_DIR,
    AwsSetup,
    bucket_policy,
    build_command,
    config_differences,
    deploy_command,
    dockerfile,
    lithops_config,
    lithops_config_text,
    same_policy,
    shell_line,
    trust_policy,
)
from fasdl.errors import FasdlError, InvalidInput

CREDENTIALS_FIX = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, plus AWS_SESSION_TOKEN for temporary "
    "credentials; or AWS_PROFILE; or run `aws configure`"
)
IAM_PROPAGATION_S = 10.0  # a new role is not assumable by Lambda at once
ACCOUNT_PLACEHOLDER = "<ACCOUNT_ID>"


def default_config_path() -> str:
    """Where Lithops looks first: ``$LITHOPS_CONFIG_FILE``, else ``~/.lithops/config``."""
    return os.environ.get("LITHOPS_CONFIG_FILE") or str(Path("~/.lithops/config").expanduser())


@dataclass(frozen=True)
class Step:
    name: str  # credentials, bucket, role, config, runtime
    action: str  # checked, created, exists, updated, written, unchanged, built, skipped, would …
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "action": self.action, "detail": self.detail}


@dataclass
class InitReport:
    setup: AwsSetup
    config_path: str
    dry_run: bool
    role_arn: str = ""
    account: str = ""
    steps: list[Step] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # name -> contents
    commands: list[str] = field(default_factory=list)  # the Lithops runtime commands

    @property
    def changed(self) -> bool:
        return any(s.action in ("created", "updated", "written", "built") for s in self.steps)

    def add(self, name: str, action: str, detail: str) -> None:
        self.steps.append(Step(name, action, detail))

    def next_command(self) -> str:
        return (
            f"fasdl train --platform lithops --lithops-config {self.config_path} "
            f"--store s3://{self.setup.bucket}/runs ..."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "changed": self.changed,
            "bucket": self.setup.bucket,
            "region": self.setup.region,
            "role_name": self.setup.role_name,
            "role_arn": self.role_arn,
            "account": self.account,
            "runtime_name": self.setup.runtime_name,
            "architecture": self.setup.architecture,
            "memory_mb": self.setup.memory_mb,
            "lithops_config": self.config_path,
            "steps": [s.to_dict() for s in self.steps],
            "files": self.files,
            "commands": self.commands,
            "next": self.next_command(),
        }


def run_init(
    setup: AwsSetup,
    config_path: str | None = None,
    *,
    dry_run: bool = False,
    skip_runtime: bool = False,
    force: bool = False,
    endpoint_url: str | None = None,
) -> InitReport:
    """Set up AWS for ``fasdl train --platform lithops``; see the module's docstring."""
    path = Path(config_path or default_config_path()).expanduser().absolute()
    report = InitReport(setup, str(path), dry_run)
    report.files["trust-policy.json"] = json.dumps(trust_policy(), indent=2)
    report.files[f"{setup.inline_policy_name}.json"] = json.dumps(
        bucket_policy(setup.bucket), indent=2
    )
    report.files["Dockerfile"] = dockerfile(setup.architecture, setup.python_version)
    report.commands = [
        f"cd BUILD_CONTEXT && {shell_line(build_command(setup, str(path)))}",
        shell_line(deploy_command(setup, str(path))),
    ]
    if dry_run:
        _plan(setup, path, report)
        return report

    if not skip_runtime:  # what the runtime step needs, before anything is created
        _runtime_tools()
    import boto3  # only here: a dry run creates no client

    session = boto3.session.Session(region_name=setup.region)
    clients = {
        name: session.client(name, region_name=setup.region, endpoint_url=endpoint_url)
        for name in ("sts", "s3", "iam")
    }
    from botocore.exceptions import BotoCoreError, ClientError

    report.account = _check_credentials(clients["sts"], report)
    try:
        _ensure_bucket(clients["s3"], setup, report)
        role_created = _ensure_role(clients["iam"], setup, report)
    except ClientError as e:  # what the steps do not expect: say which call AWS refused
        code, _ = _error_code(e)
        raise FasdlError(
            f"AWS refused {e.operation_name} ({code}): {e}"
            + (" (the credentials need S3 and IAM permissions)" if "AccessDenied" in code else "")
        ) from e
    except BotoCoreError as e:
        raise FasdlError(f"could not reach AWS: {e}") from e
    _ensure_config(setup, path, report, force)
    if skip_runtime:
        report.add(
            "runtime",
            "skipped",
            "--skip-runtime: build and deploy it later with the commands below",
        )
    else:
        _build_and_deploy(setup, path, report, wait_for_role=role_created)
    return report


# -- dry run ------------------------------------------------------------------------------------
def _plan(setup: AwsSetup, path: Path, report: InitReport) -> None:
    report.role_arn = setup.role_arn(ACCOUNT_PLACEHOLDER)
    where = "" if setup.region == "us-east-1" else f" (LocationConstraint {setup.region})"
    report.add("credentials", "would check", "sts:GetCallerIdentity")
    report.add(
        "bucket",
        "would create",
        f"s3://{setup.bucket} in {setup.region}{where}, unless it exists",
    )
    report.add(
        "role",
        "would create",
        f"{setup.role_name}, unless it exists: trust policy trust-policy.json (Lambda only), "
        f"inline policy {setup.inline_policy_name} (the bucket's objects), managed policy "
        f"{BASIC_EXECUTION_POLICY_ARN}",
    )
    text = lithops_config_text(setup, report.role_arn, str(path))
    report.files[str(path)] = text
    state = "exists: would compare with it" if path.exists() else "missing: would write it"
    report.add(
        "config",
        "would write",
        f"{path} ({state}; {ACCOUNT_PLACEHOLDER} becomes the account's id)",
    )
    report.add(
        "runtime",
        "would build",
        f"{setup.runtime_name} ({setup.architecture}, Python {setup.python_version}) from the "
        "Dockerfile, with Lithops "
        "(needs Docker), then deploy it",
    )


# -- the steps ----------------------------------------------------------------------------------
def _error_code(e: Any) -> tuple[str, int]:
    resp = getattr(e, "response", {}) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def _check_credentials(sts: Any, report: InitReport) -> str:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    try:
        ident = sts.get_caller_identity()
    except NoCredentialsError as e:
        raise InvalidInput("credentials", "no AWS credentials were found", CREDENTIALS_FIX) from e
    except PartialCredentialsError as e:
        raise InvalidInput(
            "credentials", f"incomplete AWS credentials: {e}", CREDENTIALS_FIX
        ) from e
    except ClientError as e:
        code, _ = _error_code(e)
        raise InvalidInput(
            "credentials", f"AWS rejected the credentials: {code}: {e}", CREDENTIALS_FIX
        ) from e
    except BotoCoreError as e:
        raise FasdlError(f"could not reach AWS STS: {e}") from e
    account = str(ident["Account"])
    report.add("credentials", "checked", f"{ident['Arn']} (account {account})")
    return account


def _ensure_bucket(s3: Any, setup: AwsSetup, report: InitReport) -> None:
    from botocore.exceptions import ClientError

    b = setup.bucket
    try:
        head = s3.head_bucket(Bucket=b)
    except ClientError as e:
        code, status = _error_code(e)
        headers = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        if status == 301:
            _wrong_region(setup, headers.get("x-amz-bucket-region", "another region"))
        if status == 403:
            raise InvalidInput(
                "bucket",
                f"s3://{b} exists but these credentials may not use it (another account's?)",
                "choose another --bucket",
            ) from e
        if status != 404 and code not in ("404", "NoSuchBucket", "NotFound"):
            raise FasdlError(f"could not look up s3://{b}: {e}") from e
    else:
        region = head.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region")
        if region and region != setup.region:
            _wrong_region(setup, region)
        report.add("bucket", "exists", f"s3://{b} in {region or setup.region}: unchanged")
        return
    kwargs: dict[str, Any] = {"Bucket": b}
    if setup.region != "us-east-1":  # us-east-1 takes no location constraint
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": setup.region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as e:
        code, _ = _error_code(e)
        if code == "BucketAlreadyOwnedByYou":
            report.add("bucket", "exists", f"s3://{b}: unchanged")
            return
        if code == "BucketAlreadyExists":
            raise InvalidInput(
                "bucket", f"s3://{b} is taken by another account", "choose another --bucket"
            ) from e
        raise FasdlError(f"could not create s3://{b}: {e}") from e
    report.add("bucket", "created", f"s3://{b} in {setup.region}")


def _wrong_region(setup: AwsSetup, region: str) -> None:
    raise InvalidInput(
        "bucket",
        f"s3://{setup.bucket} is in {region}, not {setup.region}",
        f"use --region {region}, or another --bucket",
    )


def _ensure_role(iam: Any, setup: AwsSetup, report: InitReport) -> bool:
    """The execution role with its policies; True when it was created now."""
    name = setup.role_name
    try:
        role = iam.get_role(RoleName=name)["Role"]
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(trust_policy()),
            Description="fasdl: AWS Lambda execution role for Lithops (one bucket, logs)",
        )["Role"]
        iam.put_role_policy(
            RoleName=name,
            PolicyName=setup.inline_policy_name,
            PolicyDocument=json.dumps(bucket_policy(setup.bucket)),
        )
        iam.attach_role_policy(RoleName=name, PolicyArn=BASIC_EXECUTION_POLICY_ARN)
        report.role_arn = str(role["Arn"])
        report.add(
            "role",
            "created",
            f"{report.role_arn}: Lambda may assume it; inline policy {setup.inline_policy_name} "
            f"(objects of {setup.bucket}); {BASIC_EXECUTION_POLICY_ARN}",
        )
        return True
    report.role_arn = str(role["Arn"])
    trust = role.get("AssumeRolePolicyDocument", {})
    if "lambda.amazonaws.com" not in json.dumps(trust):
        raise InvalidInput(
            "role_name",
            f"role {name} exists but AWS Lambda may not assume it (its trust policy: "
            f"{json.dumps(trust)})",
            "choose another --role-name",
        )
    changes = []
    try:
        doc = iam.get_role_policy(RoleName=name, PolicyName=setup.inline_policy_name)
        current = doc["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        current = None
    if current is None or not same_policy(current, bucket_policy(setup.bucket)):
        iam.put_role_policy(
            RoleName=name,
            PolicyName=setup.inline_policy_name,
            PolicyDocument=json.dumps(bucket_policy(setup.bucket)),
        )
        changes.append(f"{'added' if current is None else 'reset'} {setup.inline_policy_name}")
    attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
    if BASIC_EXECUTION_POLICY_ARN not in {p["PolicyArn"] for p in attached}:
        iam.attach_role_policy(RoleName=name, PolicyArn=BASIC_EXECUTION_POLICY_ARN)
        changes.append("attached AWSLambdaBasicExecutionRole")
    if changes:
        report.add("role", "updated", f"{report.role_arn}: {'; '.join(changes)}")
    else:
        report.add("role", "exists", f"{report.role_arn} with its policies: unchanged")
    return False


def _ensure_config(setup: AwsSetup, path: Path, report: InitReport, force: bool) -> None:
    text = lithops_config_text(setup, report.role_arn, str(path))
    report.files[str(path)] = text
    if path.exists():
        try:
            import yaml  # PyYAML, a dependency of lithops
        except ImportError as e:
            raise InvalidInput(
                "lithops_config",
                f"{path} exists, and reading it needs PyYAML (installed with lithops)",
                "pip install 'fasdl[lithops]', or choose another --lithops-config",
            ) from e

        try:
            existing = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            if not force:
                raise InvalidInput(
                    "lithops_config",
                    f"{path} exists and is not YAML ({e})",
                    "fix it, pass --force to replace it, or choose another --lithops-config",
                ) from e
            existing = None
        diffs = config_differences(
            existing if isinstance(existing, dict) else {},
            lithops_config(setup, report.role_arn),
        )
        if not diffs:
            report.add("config", "unchanged", f"{path} already says this")
            return
        if not force:
            raise InvalidInput(
                "lithops_config",
                f"{path} exists with other settings: {'; '.join(diffs)}",
                "pass --force to replace it (the old file is kept as .bak), or choose another "
                "--lithops-config",
            )
        shutil.copy2(path, path.with_name(path.name + ".bak"))
        path.write_text(text)
        report.add("config", "written", f"{path} (replaced; the old one is {path.name}.bak)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    report.add("config", "written", str(path))


# -- the runtime --------------------------------------------------------------------------------
def lithops_executable() -> str:
    """The ``lithops`` CLI beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("lithops")
    if beside.exists():
        return str(beside)
    found = shutil.which("lithops")
    if not found:
        raise InvalidInput(
            "runtime",
            "the lithops command is not installed",
            "pip install lithops==3.8.0, or pass --skip-runtime",
        )
    return found


def source_tree() -> Path:
    """fasdl's source tree (the checkout this fasdl runs from), copied into the image."""
    root = Path(fasdl.__file__).resolve().parent.parent
    pyproject = root / "pyproject.toml"
    if not pyproject.exists() or 'name = "fasdl"' not in pyproject.read_text():
        raise InvalidInput(
            "runtime",
            f"fasdl's source tree is not beside the installed package ({root})",
            "run fasdl from a checkout (pip install -e .), or pass --skip-runtime and build "
            "deploy/aws-lambda/Dockerfile yourself",
        )
    return root


def stage_build_context(setup: AwsSetup, context: Path) -> None:
    """The Dockerfile and ``fasdl-src/`` (pyproject.toml, README.md and the package)."""
    root = source_tree()
    (context / "Dockerfile").write_text(dockerfile(setup.architecture, setup.python_version))
    src = context / SOURCE_DIR
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).exists():
            shutil.copy2(root / name, src / name)
    shutil.copytree(
        root / "fasdl", src / "fasdl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )


def _run(argv: list[str], cwd: Path) -> None:
    line = shell_line(argv)
    print(f"fasdl aws init: running {line}", file=sys.stderr, flush=True)
    rc = subprocess.run(argv, cwd=cwd, stdout=2, check=False).returncode
    if rc != 0:
        raise FasdlError(f"`{line}` failed with exit code {rc} (its output is above)")


def _runtime_tools() -> str:
    """The lithops CLI, once Docker (or podman) and fasdl's source tree are there too."""
    lithops = lithops_executable()
    if not (shutil.which("docker") or shutil.which("podman")):
        raise InvalidInput(
            "runtime",
            "building the runtime needs Docker (or podman), which is not on PATH",
            "install Docker, or pass --skip-runtime and build it on a machine that has it",
        )
    source_tree()
    return lithops


def _build_and_deploy(setup: AwsSetup, path: Path, report: InitReport, wait_for_role: bool) -> None:
    lithops = _runtime_tools()
    with tempfile.TemporaryDirectory(prefix="fasdl-runtime-") as tmp:
        context = Path(tmp)
        stage_build_context(setup, context)
        _run([lithops, *build_command(setup, str(path))[1:]], context)
        if wait_for_role:
            time.sleep(IAM_PROPAGATION_S)
        _run([lithops, *deploy_command(setup, str(path))[1:]], context)
    report.add(
        "runtime",
        "built",
        f"{setup.runtime_name} pushed to ECR and deployed with {setup.memory_mb} MB "
        "(Lithops reuses the image's cached layers and keeps a function that exists)",
    )
