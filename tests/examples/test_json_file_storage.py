import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from enspace_profile.testing import StorageContract

EXAMPLES = Path(__file__).parents[2] / "examples"
JsonFileStorage = runpy.run_path(str(EXAMPLES / "json_file_storage.py"))["JsonFileStorage"]


class TestJsonFileStorage(StorageContract):
    """The example adapter in examples/ passes the contract suite, as a third party's would."""

    @pytest.fixture
    def storage(self, tmp_path: Path) -> Iterator[object]:
        s = JsonFileStorage(tmp_path / "panel.json")
        yield s
        s.close()


class TestExamplesRun:
    @pytest.mark.parametrize("script", ["quickstart.py", "json_file_storage.py"])
    def test_example_runs(self, script: str) -> None:
        """Each example script runs to completion on a fresh machine state."""
        result = subprocess.run(
            [sys.executable, str(EXAMPLES / script)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip()
