"""`fasdl aws init` as a user runs it (a subprocess), against moto's AWS emulator in server mode
(S3, IAM and STS over HTTP on a free local port; boto3 reaches it through --endpoint-url).

Exercised here: the credentials check, the bucket (region-aware), the execution role with its
trust, inline and managed policies, the Lithops config, idempotency, --force, --dry-run.
Not exercised: `lithops runtime build/deploy` (they need Docker and a real ECR and Lambda):
every run here passes --skip-runtime; tests/unit/test_cloud_aws.py checks the Dockerfile and
the command lines against Lithops' own code.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# moto[server], PyYAML (with lithops) and boto3 are dev dependencies: CI must run these tests,
# so a missing one is an import error, not a skip.
import boto3
import moto.server  # noqa: F401
import pytest
import yaml

from fasdl.cloud.aws import (
    BASIC_EXECUTION_POLICY_ARN,
    AwsSetup,
    bucket_policy,
    lithops_config,
    same_policy,
    trust_policy,
)
from fasdl.testing import free_port

FASDL = [sys.executable, "-m", "fasdl.cli.main"]
REGION = "eu-west-1"
DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The environment without any AWS setting of the machine's, nor any way to find one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LITHOPS_"))}
    env.update(
        AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        # AWS-managed policies (AWSLambdaBasicExecutionRole) exist only with this
        env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start (see {log.name})") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


@pytest.fixture
def aws(moto_url: str) -> dict[str, Any]:
    """boto3 clients on a freshly reset emulator."""
    req = urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()
    kw: dict[str, Any] = {"endpoint_url": moto_url, "region_name": REGION, **_creds()}
    return {name: boto3.client(name, **kw) for name in ("s3", "iam", "sts")}


def _creds() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _init(
    tmp: Path, endpoint: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    argv = [*FASDL, "aws", "init", "--endpoint-url", endpoint, *args]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else _clean_env(tmp, **DUMMY),
        cwd=tmp,
    )


def _bucket() -> str:
    return f"fasdl-{uuid.uuid4().hex[:12]}"


def _actions(report: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["action"] for s in report["steps"]}


def test_creates_bucket_role_and_config(aws: dict[str, Any], moto_url: str, tmp_path: Path) -> None:
    bucket, config = _bucket(), tmp_path / "lithops" / "config"
    r = _init(
        tmp_path,
        moto_url,
        *("--bucket", bucket, "--region", REGION, "--lithops-config", str(config)),
        *("--skip-runtime", "--json"),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert _actions(report) == {
        "credentials": "checked",
        "bucket": "created",
        "role": "created",
        "config": "written",
        "runtime": "skipped",
    }
    assert report["changed"] is True
    # the bucket, in its region
    loc = aws["s3"].get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert loc == REGION
    # the role: Lambda may assume it; the bucket's objects; the basic execution policy
    role = aws["iam"].get_role(RoleName="fasdl-lithops-execution")["Role"]
    assert role["Arn"] == "arn:aws:iam::123456789012:role/fasdl-lithops-execution"
    assert report["role_arn"] == role["Arn"]
    assert same_policy(role["AssumeRolePolicyDocument"], trust_policy())
    names = aws["iam"].list_role_policies(RoleName="fasdl-lithops-execution")["PolicyNames"]
    assert names == [f"fasdl-s3-{bucket}"]
    inline = aws["iam"].get_role_policy(RoleName="fasdl-lithops-execution", PolicyName=names[0])
    assert same_policy(inline["PolicyDocument"], bucket_policy(bucket))
    attached = aws["iam"].list_attached_role_policies(RoleName="fasdl-lithops-execution")
    assert [p["PolicyArn"] for p in attached["AttachedPolicies"]] == [BASIC_EXECUTION_POLICY_ARN]
    # the config: what Lithops reads
    setup = AwsSetup(bucket=bucket, region=REGION)
    assert yaml.safe_load(config.read_text()) == lithops_config(setup, role["Arn"])
    # the commands that would build and deploy the runtime, printed for later
    assert report["commands"][0].endswith(
        f"lithops runtime build -f Dockerfile -b aws_lambda -c {config} fasdl-runtime:0.1.0"
    )
    assert report["next"].startswith(
        f"fasdl train --platform lithops --lithops-config {config} --store s3://{bucket}/runs"
    )


def test_us_east_1_bucket_has_no_location_constraint(
    aws: dict[str, Any], moto_url: str, tmp_path: Path
) -> None:
    bucket = _bucket()
    r = _init(
        tmp_path,
        moto_url,
        *("--bucket", bucket, "--region", "us-east-1"),
        *("--lithops-config", str(tmp_path / "c"), "--skip-runtime"),
    )
    assert r.returncode == 0, r.stderr
    assert aws["s3"].get_bucket_location(Bucket=bucket)["LocationConstraint"] is None


def test_second_run_changes_nothing(aws: dict[str, Any], moto_url: str, tmp_path: Path) -> None:
    bucket, config = _bucket(), tmp_path / "config"
    args = ("--bucket", bucket, "--region", REGION, "--lithops-config", str(config))
    first = _init(tmp_path, moto_url, *args, "--skip-runtime")
    assert first.returncode == 0, first.stderr
    text, mtime = config.read_text(), config.stat().st_mtime_ns
    second = _init(tmp_path, moto_url, *args, "--skip-runtime", "--json")
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert _actions(report) == {
        "credentials": "checked",
        "bucket": "exists",
        "role": "exists",
        "config": "unchanged",
        "runtime": "skipped",
    }
    assert report["changed"] is False
    assert (config.read_text(), config.stat().st_mtime_ns) == (text, mtime)
    assert not list(tmp_path.glob("*.bak"))
    third = _init(tmp_path, moto_url, *args, "--skip-runtime")
    assert "already set up: nothing changed" in third.stdout
    # still one inline policy, one managed policy
    iam = aws["iam"]
    assert len(iam.list_role_policies(RoleName="fasdl-lithops-execution")["PolicyNames"]) == 1
    attached = iam.list_attached_role_policies(RoleName="fasdl-lithops-execution")
    assert len(attached["AttachedPolicies"]) == 1


def test_a_role_without_its_policies_gets_them(
    aws: dict[str, Any], moto_url: str, tmp_path: Path
) -> None:
    bucket = _bucket()
    aws["iam"].create_role(RoleName="mine", AssumeRolePolicyDocument=json.dumps(trust_policy()))
    r = _init(
        tmp_path,
        moto_url,
        *("--bucket", bucket, "--region", REGION, "--role-name", "mine"),
        *("--lithops-config", str(tmp_path / "c"), "--skip-runtime", "--json"),
    )
    assert r.returncode == 0, r.stderr
    role_step = next(s for s in json.loads(r.stdout)["steps"] if s["name"] == "role")
    assert role_step["action"] == "updated"
    inline = aws["iam"].get_role_policy(RoleName="mine", PolicyName=f"fasdl-s3-{bucket}")
    assert same_policy(inline["PolicyDocument"], bucket_policy(bucket))
    attached = aws["iam"].list_attached_role_policies(RoleName="mine")["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [BASIC_EXECUTION_POLICY_ARN]


def test_a_role_lambda_cannot_assume_is_refused(
    aws: dict[str, Any], moto_url: str, tmp_path: Path
) -> None:
    ec2_only = json.dumps(trust_policy()).replace("lambda.amazonaws.com", "ec2.amazonaws.com")
    aws["iam"].create_role(RoleName="ec2-role", AssumeRolePolicyDocument=ec2_only)
    r = _init(
        tmp_path,
        moto_url,
        *("--bucket", _bucket(), "--region", REGION, "--role-name", "ec2-role"),
        *("--lithops-config", str(tmp_path / "c"), "--skip-runtime"),
    )
    assert r.returncode == 2, r.stderr
    assert "--role-name" in r.stderr and "may not assume" in r.stderr
    assert not aws["iam"].list_role_policies(RoleName="ec2-role")["PolicyNames"]


def test_a_config_with_other_settings_is_kept_unless_force(
    aws: dict[str, Any], moto_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "config"
    config.write_text("lithops:\n  backend: gcp_functions\n")
    args = ("--bucket", _bucket(), "--region", REGION, "--lithops-config", str(config))
    r = _init(tmp_path, moto_url, *args, "--skip-runtime")
    assert r.returncode == 2, r.stderr
    assert "--lithops-config" in r.stderr and "lithops.backend" in r.stderr
    assert "--force" in r.stderr
    assert config.read_text() == "lithops:\n  backend: gcp_functions\n"
    forced = _init(tmp_path, moto_url, *args, "--skip-runtime", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "config.bak").read_text() == "lithops:\n  backend: gcp_functions\n"
    assert yaml.safe_load(config.read_text())["lithops"]["backend"] == "aws_lambda"


def test_a_bucket_in_another_region_is_refused(
    aws: dict[str, Any], moto_url: str, tmp_path: Path
) -> None:
    bucket = _bucket()
    s3_west = boto3.client("s3", endpoint_url=moto_url, region_name="us-west-2", **_creds())
    s3_west.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"}
    )
    r = _init(
        tmp_path,
        moto_url,
        *("--bucket", bucket, "--region", REGION, "--lithops-config", str(tmp_path / "c")),
        "--skip-runtime",
    )
    assert r.returncode == 2, r.stderr
    assert "--bucket" in r.stderr and "us-west-2" in r.stderr and "--region us-west-2" in r.stderr
    assert not (tmp_path / "c").exists()


def test_missing_credentials_is_a_clear_error(
    aws: dict[str, Any], moto_url: str, tmp_path: Path
) -> None:
    bucket = _bucket()
    r = _init(
        tmp_path,
        moto_url,
        *("--bucket", bucket, "--region", REGION, "--lithops-config", str(tmp_path / "c")),
        "--skip-runtime",
        env=_clean_env(tmp_path),
    )
    assert r.returncode == 2, r.stderr
    assert "credentials" in r.stderr
    assert "AWS_ACCESS_KEY_ID" in r.stderr and "AWS_SECRET_ACCESS_KEY" in r.stderr
    assert "Traceback" not in r.stderr
    assert bucket not in {b["Name"] for b in aws["s3"].list_buckets()["Buckets"]}
    assert not (tmp_path / "c").exists()


def test_without_docker_the_runtime_step_fails_before_anything_is_created(
    aws: dict[str, Any], moto_url: str, tmp_path: Path
) -> None:
    pytest.importorskip("lithops")
    bucket, config = _bucket(), tmp_path / "c"
    no_docker = tmp_path / "bin"
    no_docker.mkdir()
    r = _init(
        tmp_path,
        moto_url,
        *("--bucket", bucket, "--region", REGION, "--lithops-config", str(config)),
        env=_clean_env(tmp_path, **DUMMY, PATH=str(no_docker)),
    )
    assert r.returncode == 2, r.stderr
    assert "Docker" in r.stderr and "--skip-runtime" in r.stderr
    assert bucket not in {b["Name"] for b in aws["s3"].list_buckets()["Buckets"]}
    assert not aws["iam"].list_roles()["Roles"]
    assert not config.exists()


def test_bad_input_names_the_flag(moto_url: str, tmp_path: Path) -> None:
    r = _init(tmp_path, moto_url, "--bucket", "Not_A_Bucket", "--region", REGION, "--dry-run")
    assert r.returncode == 2
    assert "--bucket" in r.stderr and "Not_A_Bucket" in r.stderr


class _Listener:
    """A TCP port that counts the connections made to it (and answers none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


def test_dry_run_touches_nothing(tmp_path: Path) -> None:
    """No credentials, every AWS endpoint on a port that counts connections: the dry run prints
    every step and file, and nothing reaches the port, nor is any file written."""
    listener = _Listener()
    try:
        bucket, config = _bucket(), tmp_path / "lithops" / "config"
        r = _init(
            tmp_path,
            listener.url,
            *("--bucket", bucket, "--region", REGION, "--lithops-config", str(config)),
            "--dry-run",
            env=_clean_env(tmp_path, AWS_ENDPOINT_URL=listener.url),
        )
    finally:
        listener.close()
    assert r.returncode == 0, r.stderr
    assert listener.connections == 0
    assert not config.exists() and not config.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    out = r.stdout
    assert out.startswith("dry run: nothing is created or written")
    for step in ("credentials", "bucket", "role", "config", "runtime"):
        assert f"\n{step:<12} would " in out
    assert json.dumps(trust_policy(), indent=2) in out
    assert json.dumps(bucket_policy(bucket), indent=2) in out
    assert "FROM --platform=linux/amd64 public.ecr.aws/lambda/python:3.11" in out
    assert f"storage_bucket: {bucket}" in out
    assert 'execution_role: "arn:aws:iam::<ACCOUNT_ID>:role/fasdl-lithops-execution"' in out
    assert f"lithops runtime build -f Dockerfile -b aws_lambda -c {config}" in out
    assert f"lithops runtime deploy -b aws_lambda -c {config} --memory 1769 --timeout 900" in out


def test_dry_run_json_has_every_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    r = _init(
        tmp_path,
        "http://127.0.0.1:9",
        *("--bucket", "fasdl-b", "--region", REGION, "--lithops-config", str(config)),
        *("--arch", "arm64", "--memory", "3008", "--dry-run", "--json"),
        env=_clean_env(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["dry_run"] is True and report["changed"] is False
    assert set(report["files"]) == {
        "trust-policy.json",
        "fasdl-s3-fasdl-b.json",
        "Dockerfile",
        str(config),
    }
    assert "FROM --platform=linux/arm64 " in report["files"]["Dockerfile"]
    parsed = yaml.safe_load(report["files"][str(config)])
    assert parsed["aws_lambda"]["architecture"] == "arm64"
    assert parsed["aws_lambda"]["runtime_memory"] == 3008
    assert not config.exists()
