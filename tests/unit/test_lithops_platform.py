"""The Lithops adapter's set-up, without running a function: config, limits, flags, no lithops.

What its functions do is tested by the platform contract (tests/integration/
test_platform_contract.py) and by whole jobs (tests/integration/test_lithops.py).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from fasdl.cli.main import main
from fasdl.errors import InvalidInput

needs_lithops = pytest.mark.skipif(
    importlib.util.find_spec("lithops") is None, reason="pip install 'fasdl[lithops]'"
)

# Run with lithops unimportable, as for a user without the extra.
WITHOUT_LITHOPS = "import sys; sys.modules['lithops'] = None\n"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_LITHOPS + code], capture_output=True, text=True, timeout=120
    )


def test_fasdl_imports_and_parses_without_lithops() -> None:
    out = _python(
        "import fasdl.platform, fasdl.platform.lithops, fasdl.cli.main as m\n"
        "m.build_parser().parse_args(['train', '--platform', 'lithops', '--backend', 'x'])\n"
        "assert 'lithops' in fasdl.platform.base.PLATFORMS\n"
        "print('ok')"
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_opening_the_platform_without_lithops_says_how_to_install_it() -> None:
    out = _python(
        "from fasdl.platform import open_platform\n"
        "from fasdl.errors import InvalidInput\n"
        "try:\n"
        "    open_platform('lithops', backend='localhost')\n"
        "except InvalidInput as e:\n"
        "    print(e.field, '|', e)\n"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("platform |")
    assert "pip install 'fasdl[lithops]'" in out.stdout


def test_the_cli_without_lithops_exits_2_with_the_hint(tmp_path: Path) -> None:
    out = _python(
        "from fasdl.cli.main import main\n"
        "sys.exit(main(['smoke', '--platform', 'lithops', '--backend', 'localhost']))"
    )
    assert out.returncode == 2, out.stderr
    assert "--platform" in out.stderr and "pip install 'fasdl[lithops]'" in out.stderr


def test_lithops_flags_need_the_lithops_platform(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "--platform", "local", "--backend", "localhost"]) == 2
    assert "--backend is for --platform lithops" in capsys.readouterr().err


@needs_lithops
def test_a_missing_config_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["smoke", "--platform", "lithops", "--lithops-config", str(missing)]) == 2
    err = capsys.readouterr().err
    assert "--lithops-config" in err and str(missing) in err


@pytest.fixture
def no_lithops_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No config file where Lithops looks for one (its env variable, the cwd, the home)."""
    for var in ("LITHOPS_CONFIG_FILE", "FASDL_LITHOPS_BACKEND", "FASDL_LITHOPS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    lithops_config = pytest.importorskip("lithops.config")
    monkeypatch.setattr(lithops_config, "get_default_config_filename", lambda: None)


@needs_lithops
def test_localhost_needs_no_config_file_and_runs_this_python(no_lithops_config: None) -> None:
    from fasdl.platform.lithops import LOCALHOST_MAX_CONCURRENCY, build_config

    for backend in (None, "localhost"):
        config, found, ours = build_config(backend, None, 3)
        assert found is None and ours == 3
        assert config is not None
        assert config["lithops"] == {"backend": "localhost", "storage": "localhost"}
        # this interpreter (it has fasdl and torch), one more process than run at once
        assert config["localhost"] == {"runtime": sys.executable, "worker_processes": 4}
    config, _, ours = build_config("localhost", None, 1000)
    assert ours == LOCALHOST_MAX_CONCURRENCY
    assert config is not None
    assert config["localhost"]["worker_processes"] == LOCALHOST_MAX_CONCURRENCY + 1


@needs_lithops
def test_a_cloud_backend_without_a_config_is_refused(no_lithops_config: None) -> None:
    from fasdl.platform.lithops import build_config

    with pytest.raises(InvalidInput, match="no Lithops configuration for the aws_lambda") as err:
        build_config("aws_lambda", None, 3)
    assert err.value.field == "lithops_config"


@needs_lithops
def test_a_config_file_is_read_and_the_backend_flag_wins(
    no_lithops_config: None, tmp_path: Path
) -> None:
    from fasdl.platform.lithops import build_config

    path = tmp_path / "config.yaml"
    path.write_text(
        "lithops:\n  backend: aws_lambda\n  storage: aws_s3\n"
        "aws_lambda:\n  max_workers: 50\nlocalhost:\n  worker_processes: 100\n"
    )
    config, found, ours = build_config(None, str(path), 8)
    assert found == str(path) and ours is None  # a cloud: its max_workers, read by Lithops
    assert config is not None and config["lithops"]["backend"] == "aws_lambda"
    config, _, ours = build_config("localhost", str(path), 8)
    assert config is not None and config["lithops"]["backend"] == "localhost"
    # localhost from a file: the configured worker_processes is kept when larger
    assert ours == 8 and config["localhost"]["worker_processes"] == 100
    assert config["localhost"]["runtime"] == sys.executable


@needs_lithops
def test_the_localhost_platform_reports_its_concurrency(no_lithops_config: None) -> None:
    from fasdl.platform import open_platform

    with open_platform("lithops", backend="localhost", concurrency=3) as plat:
        assert plat.concurrency == 3
        assert plat._fexec.config["localhost"]["worker_processes"] == 4  # type: ignore[attr-defined]
    with open_platform("lithops", backend="localhost") as plat:  # the coordinator's "any"
        assert plat.concurrency == 64


@needs_lithops
def test_a_time_limit_over_the_deployed_runtimes_is_refused(no_lithops_config: None) -> None:
    """On a serverless backend Lithops cuts a call to the runtime's timeout less 5 s."""
    from fasdl.platform import open_platform

    with open_platform("lithops", backend="localhost", concurrency=1) as plat:
        assert plat.max_timeout_s is None  # type: ignore[attr-defined]
        # What Lithops' config holds for a Lambda runtime deployed with its default timeout.
        config = plat._fexec.config  # type: ignore[attr-defined]
        config["lithops"]["mode"] = "serverless"
        plat.backend = "aws_lambda"  # type: ignore[attr-defined]
        config["aws_lambda"] = {"runtime_timeout": 180, "max_workers": 1000}
        assert plat.max_timeout_s == 175  # type: ignore[attr-defined]
        with pytest.raises(InvalidInput, match="runtime_timeout") as err:
            plat.invoke("smoke", {}, memory_mb=512, timeout_s=900)
        assert err.value.field == "timeout_s"
        assert plat.invocations == []
