"""The cached environments install a scoring folder's requirements.txt as pip reads it (`-r`)."""
from pathlib import Path

import pytest

from amlops.deploy.local import server_env


@pytest.mark.slow  # creates a virtual environment and installs a package from the index
def test_a_requirements_file_with_comments_and_includes_installs(tmp_path: Path, monkeypatch) -> None:
    """Inline comments and `-r` includes are valid requirements-file lines; passed one by one as arguments,
    `six==1.16.0  # pinned` made the installer fail ("Trailing `# pinned` is not allowed")."""
    monkeypatch.setenv("AMLOPS_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "base.txt").write_text("six==1.16.0  # pinned, as in training\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# the scoring requirements\n-r base.txt\n")
    python = server_env.cached_python("test-env", [], print, what="a test environment", fallback="nothing",
                                      requirements=requirements)
    assert list(python.parent.parent.glob("lib/python*/site-packages/six-1.16.0.dist-info"))
    requirements.write_text("# the scoring requirements, changed\n-r base.txt\n")
    changed = server_env.cached_python("test-env", [], print, what="a test environment", fallback="nothing",
                                       requirements=requirements)
    assert changed != python, "a changed requirements file is another environment"
