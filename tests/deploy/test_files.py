"""Every file under deploy/: no credential in it, and the paths the README and the files name exist."""

from __future__ import annotations

import re

from tests.deploy.shipped import DEPLOY, ROOT, literal_secrets


def test_no_literal_credentials_in_deploy() -> None:
    """Config files (comments aside) give no password or token a value: only $VARIABLES, files and Secrets."""
    checked = []
    for path in sorted(DEPLOY.rglob("*")):
        if not path.is_file() or path.suffix in (".py", ".md"):  # code and prose: read by review, not by pattern
            continue
        text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
        assert literal_secrets(text) == [], path
        checked.append(path.name)
    assert {"nats-server.conf", "streamd.toml", "compose.yaml", "sidecar.yaml", "streamd.service"} <= set(checked)


def test_deploy_paths_named_in_readme_exist() -> None:
    readme = (ROOT / "README.md").read_text() + (DEPLOY / "systemd" / "README.md").read_text()
    named = set(re.findall(r"(?<![\w/])deploy/[\w./-]+\w", readme))
    assert "deploy/streamd.toml" in named and "deploy/systemd/install.sh" in named
    for rel in named:
        assert (ROOT / rel).exists(), rel
