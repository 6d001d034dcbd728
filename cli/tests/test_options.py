"""The wharf command refuses bad options with a one-line error and exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from wharf_cli.autoscale import Limits, Policy
from wharf_cli.main import _limits, main
from wharf_cli.services import SERVICES


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No WHARF_ or AWS setting of the caller's leaks in; a private home."""
    for key in list(os.environ):
        if key.startswith(("WHARF_", "AWS_", "KUBERNETES_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("WHARF_HOME", str(tmp_path / "wharf"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--target-seconds", "0", "must be more than 0"),
        ("--target-seconds", "-5", "must be more than 0"),
        ("--target-seconds", "nan", "finite"),
        ("--interval", "0", "must be more than 0"),
        ("--cooldown", "-1", "cannot be negative"),
        ("--cooldown", "soon", "must be a number of seconds"),
    ],
)
def test_autoscale_refuses_bad_timings(
    capsys: pytest.CaptureFixture[str], option: str, value: str, says: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["autoscale", "--once", option, value])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert option in err and says in err
    assert "Traceback" not in err


def test_policy_refuses_a_target_that_would_divide_by_zero() -> None:
    with pytest.raises(ValueError, match="target_seconds"):
        Policy(target_seconds=0)


@pytest.mark.parametrize(
    ("limits", "says"),
    [
        ("documents=0:8", "documents runs 1 to 8 tasks"),
        ("documents=1:99", "documents runs 1 to 8 tasks"),
        ("documents=3:2", "MIN must not exceed MAX"),
        ("gateway=0:4", "gateway always runs at least 1 task"),
    ],
)
def test_autoscale_limits_keep_to_the_service_range(
    capsys: pytest.CaptureFixture[str], limits: str, says: str
) -> None:
    code = main(["autoscale", "--once", "--limits", limits])

    assert code == 2
    err = capsys.readouterr().err
    assert says in err
    if "runs 1 to 8" in says:
        assert "--force" in err


def test_forced_limits_may_leave_the_range_but_the_gateway_keeps_one_task(
    capsys: pytest.CaptureFixture[str],
) -> None:
    limits = _limits(["documents=0:99"], SERVICES, force=True)

    assert limits["documents"] == Limits(0, 99)
    assert main(["autoscale", "--once", "--force", "--limits", "gateway=0:4"]) == 2
    assert "gateway always runs at least 1 task" in capsys.readouterr().err


def test_ecs_status_without_a_region_says_which_setting_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["status", "--backend", "ecs"])

    assert code == 2
    err = capsys.readouterr().err
    assert "AWS_REGION" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_k8s_status_outside_a_cluster_says_which_setting_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["status", "--backend", "k8s"])

    assert code == 2
    err = capsys.readouterr().err
    assert "WHARF_K8S_API_URL" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_ecs_status_without_credentials_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    code = main(["status", "--backend", "ecs"])

    assert code == 1
    err = capsys.readouterr().err
    assert "credentials" in err.lower()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
