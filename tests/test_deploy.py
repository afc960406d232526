import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

UNIT = ROOT / "deploy" / "newsbot.service"


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    newsbot = Path(sys.executable).with_name("newsbot")
    unit = tmp_path / "newsbot.service"
    # The unit names the install location of docs/deploy.md; verify it against this install.
    unit.write_text(UNIT.read_text().replace("/opt/newsbot/.venv/bin/newsbot", str(newsbot)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""


def test_unit_does_not_restart_on_configuration_errors() -> None:
    # Exit 2 is a configuration error (documented in the README); a restart loop hides it.
    assert "RestartPreventExitStatus=2" in UNIT.read_text()
