"""The pure parts of `fasdl aws init`: the runtime's Dockerfile, the Lithops command lines, the
Lithops config and the IAM policies, checked as text and against Lithops 3.8's own code (its
config loaders, its CLI's parser, its handler zip). Docker is not needed: nothing is built."""

from __future__ import annotations

import copy
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from fasdl.cloud.aws import (
    LITHOPS_HANDLER,
    LITHOPS_ZIP,
    TORCH_CPU_INDEX,
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
from fasdl.cloud.aws_init import stage_build_context
from fasdl.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
SETUP = AwsSetup(bucket="fasdl-test-bucket", region="eu-west-1")
ROLE = "arn:aws:iam::123456789012:role/fasdl-lithops-execution"


# -- the Dockerfile -----------------------------------------------------------------------------
def test_dockerfile_pins_cpu_torch_from_the_pytorch_cpu_index() -> None:
    text = dockerfile()
    assert TORCH_CPU_INDEX == "https://download.pytorch.org/whl/cpu"
    lines = [line for line in text.splitlines() if "torch==" in line and line.startswith("RUN")]
    assert lines == [
        "RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu "
        "torch==2.13.0"
    ]


def test_dockerfile_torch_is_the_one_pyproject_pins() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("torch")]
    assert f"RUN pip install --no-cache-dir --index-url {TORCH_CPU_INDEX} {pin}\n" in dockerfile()


def test_dockerfile_base_image_architecture_and_handler() -> None:
    x86 = dockerfile("x86_64", "3.11")
    arm = dockerfile("arm64", "3.12")
    assert "\nFROM --platform=linux/amd64 public.ecr.aws/lambda/python:3.11\n" in x86
    assert "\nFROM --platform=linux/arm64 public.ecr.aws/lambda/python:3.12\n" in arm
    for text in (x86, arm):
        assert text.count("\nFROM ") == 1
        assert text.rstrip().endswith('CMD [ "handler.entry_point.lambda_handler" ]')
        assert "COPY fasdl-src /tmp/fasdl-src\n" in text
        assert "RUN pip install --no-cache-dir /tmp/fasdl-src" in text
        # torch comes before fasdl, so that fasdl's torch==2.13.0 is met by the CPU build
        assert text.index("torch==2.13.0") < text.index("/tmp/fasdl-src &&")


def test_the_shipped_dockerfile_is_the_generated_one() -> None:
    shipped = (ROOT / "deploy" / "aws-lambda" / "Dockerfile").read_text()
    assert shipped == dockerfile("x86_64", "3.11")


def test_dockerfile_uses_the_zip_and_handler_lithops_builds() -> None:
    """Lithops 3.8's AWS Lambda backend writes lithops_lambda.zip into the build context, and
    its entry point module defines lambda_handler."""
    pytest.importorskip("lithops")
    from lithops.serverless.backends.aws_lambda import aws_lambda, entry_point

    assert aws_lambda.LITHOPS_FUNCTION_ZIP == LITHOPS_ZIP
    assert LITHOPS_HANDLER == "handler.entry_point.lambda_handler"
    assert callable(entry_point.lambda_handler)


def test_dockerfile_handler_steps_give_an_importable_handler(tmp_path: Path) -> None:
    """Run the Dockerfile's own handler step (the RUN after COPY lithops_lambda.zip) in a
    directory, on the zip Lithops makes: handler.entry_point.lambda_handler imports from there
    (what AWS's base image does with CMD), with the lithops package from the zip."""
    pytest.importorskip("lithops")
    from lithops.serverless.backends.aws_lambda import aws_lambda
    from lithops.utils import create_handler_zip

    main_file = Path(aws_lambda.__file__).with_name("entry_point.py")
    create_handler_zip(str(tmp_path / LITHOPS_ZIP), str(main_file), "entry_point.py")
    text = dockerfile()
    step = text[text.index(f"COPY {LITHOPS_ZIP}") :].split("\nRUN ", 1)[1].split("\n\n")[0]
    step = step.replace("\\\n", " ").replace("python3 ", f"{shlex.quote(sys.executable)} ")
    subprocess.run(["sh", "-c", step], cwd=tmp_path, check=True)
    assert not (tmp_path / LITHOPS_ZIP).exists()
    module, func = LITHOPS_HANDLER.rsplit(".", 1)
    probe = f"import {module} as m, lithops; assert callable(m.{func}); print(lithops.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()).resolve().is_relative_to(tmp_path.resolve())


def test_build_context_holds_the_dockerfile_and_fasdl_source(tmp_path: Path) -> None:
    stage_build_context(SETUP, tmp_path)
    assert (tmp_path / "Dockerfile").read_text() == dockerfile()
    src = tmp_path / "fasdl-src"
    assert (src / "pyproject.toml").read_text() == (ROOT / "pyproject.toml").read_text()
    assert (src / "README.md").exists()  # pyproject's readme: setuptools needs it
    assert (src / "fasdl" / "cloud" / "aws.py").exists()
    assert (src / "fasdl" / "presets").is_dir()
    assert not list(src.rglob("__pycache__"))


# -- the Lithops commands -----------------------------------------------------------------------
def test_runtime_commands_are_exact() -> None:
    build = shell_line(build_command(SETUP, "/c/config"))
    assert (
        build
        == "lithops runtime build -f Dockerfile -b aws_lambda -c /c/config fasdl-runtime:0.1.0"
    )
    setup = AwsSetup(bucket="b-1", region="us-east-1", runtime_name="me/rt:2", memory_mb=3008)
    deploy = shell_line(deploy_command(setup, "/c/my config"))
    assert deploy == (
        "lithops runtime deploy -b aws_lambda -c '/c/my config' --memory 3008 --timeout 900 me/rt:2"
    )


def test_runtime_commands_parse_with_lithops_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lithops 3.8's own click parser accepts both command lines, with the values we mean."""
    pytest.importorskip("lithops")
    from lithops.scripts.cli import lithops_cli

    config = tmp_path / "config"
    config.write_text(lithops_config_text(SETUP, ROLE))
    (tmp_path / "Dockerfile").write_text(dockerfile())
    monkeypatch.chdir(tmp_path)  # build's -f Dockerfile is relative to the build context
    runtime_group = lithops_cli.commands["runtime"]
    for argv, command in (
        (build_command(SETUP, str(config)), "build"),
        (deploy_command(SETUP, str(config)), "deploy"),
    ):
        assert argv[:3] == ["lithops", "runtime", command]
        cmd = runtime_group.commands[command]
        ctx = cmd.make_context(command, list(argv[3:]))
        assert ctx.params["name"] == SETUP.runtime_name
        assert ctx.params["backend"] == "aws_lambda"
        assert ctx.params["config"] == str(config)
        assert not ctx.args  # nothing left over (build passes leftovers to docker)
        if command == "build":
            assert ctx.params["file"] == "Dockerfile"
        else:
            assert ctx.params["memory"] == SETUP.memory_mb
            assert ctx.params["timeout"] == 900


# -- the Lithops config -------------------------------------------------------------------------
def test_config_text_is_the_config_and_lithops_loads_it() -> None:
    yaml = pytest.importorskip("yaml")
    text = lithops_config_text(SETUP, ROLE, "/home/u/.lithops/config")
    parsed = yaml.safe_load(text)
    assert parsed == {
        "lithops": {"backend": "aws_lambda", "storage": "aws_s3"},
        "aws": {"region": "eu-west-1"},
        "aws_lambda": {
            "execution_role": ROLE,
            "runtime": "fasdl-runtime:0.1.0",
            "runtime_memory": 1769,
            "runtime_timeout": 900,
            "architecture": "x86_64",
        },
        "aws_s3": {"storage_bucket": "fasdl-test-bucket"},
    }
    assert parsed == lithops_config(SETUP, ROLE)
    pytest.importorskip("lithops")
    from lithops.serverless.backends.aws_lambda.config import load_config as load_lambda
    from lithops.storage.backends.aws_s3.config import load_config as load_s3

    loaded = copy.deepcopy(parsed)
    load_lambda(loaded)
    load_s3(loaded)
    lam = loaded["aws_lambda"]
    assert (lam["region"], lam["execution_role"], lam["runtime_timeout"]) == (
        "eu-west-1",
        ROLE,
        900,
    )
    assert (lam["runtime_memory"], lam["architecture"]) == (1769, "x86_64")
    assert loaded["aws_s3"]["storage_bucket"] == "fasdl-test-bucket"
    assert loaded["aws_s3"]["region"] == "eu-west-1"


def test_config_text_quotes_what_yaml_would_misread() -> None:
    yaml = pytest.importorskip("yaml")
    for bucket in ("yes", "off", "null", "1234", "1e10", "0x12"):
        setup = AwsSetup(bucket=bucket, region="us-east-1", runtime_name="rt:1.10")
        parsed = yaml.safe_load(lithops_config_text(setup, ROLE))
        assert parsed["aws_s3"]["storage_bucket"] == bucket
        assert parsed["aws_lambda"]["runtime"] == "rt:1.10"


def test_config_differences_ignore_the_users_own_keys() -> None:
    wanted = lithops_config(SETUP, ROLE)
    mine = copy.deepcopy(wanted)
    mine["aws_lambda"]["max_workers"] = 50
    assert config_differences(mine, wanted) == []
    mine["aws_s3"]["storage_bucket"] = "other"
    (diff,) = config_differences(mine, wanted)
    assert diff.startswith("aws_s3.storage_bucket")


# -- IAM ----------------------------------------------------------------------------------------
def test_policies_are_least_privilege() -> None:
    (stmt,) = trust_policy()["Statement"]
    assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert stmt["Action"] == "sts:AssumeRole"
    objects, listing = bucket_policy("b-1")["Statement"]
    assert objects["Action"] == ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    assert objects["Resource"] == "arn:aws:s3:::b-1/*"
    assert (listing["Action"], listing["Resource"]) == ("s3:ListBucket", "arn:aws:s3:::b-1")
    assert "*" not in {objects["Resource"], listing["Resource"]}


def test_same_policy_reads_iam_shapes() -> None:
    mine = bucket_policy("b-1")
    as_iam = copy.deepcopy(mine)
    as_iam["Statement"][1]["Action"] = ["s3:ListBucket"]
    as_iam["Statement"].reverse()
    assert same_policy(as_iam, mine)
    assert not same_policy(bucket_policy("b-2"), mine)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("bucket", {"bucket": "My_Bucket"}),
        ("bucket", {"bucket": "ab"}),
        ("bucket", {"bucket": "192.168.1.1"}),
        ("region", {"region": "europe"}),
        ("role_name", {"role_name": "a role"}),
        ("runtime_name", {"runtime_name": "Fasdl:1"}),
        ("architecture", {"architecture": "arm"}),
        ("memory_mb", {"memory_mb": 64}),
        ("python_version", {"python_version": "3.9"}),
    ],
)
def test_setup_checks_every_field(field: str, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"bucket": "fasdl-b", "region": "us-west-2", **kwargs}
    with pytest.raises(InvalidInput) as e:
        AwsSetup(**args)  # type: ignore[arg-type]
    assert e.value.field == field
    assert re.search(r"\S", e.value.problem)
