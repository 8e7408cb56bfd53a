"""The deploy/ files as shipped, and the few substitutions a test needs to run them (ports, paths) and no others."""

from __future__ import annotations

import re
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HEALTHCHECK = DEPLOY / "container" / "healthcheck.py"


def read(relative: str) -> str:
    return (DEPLOY / relative).read_text()


def with_ports(text: str, ports: dict[int, int]) -> str:
    """`text` with each `127.0.0.1:<shipped>` replaced by `127.0.0.1:<free>`; each shipped port must occur once."""
    for shipped, free in ports.items():
        needle = f"127.0.0.1:{shipped}"
        assert text.count(needle) == 1, f"expected {needle} exactly once"
        text = text.replace(needle, f"127.0.0.1:{free}")
    return text


def leaf_password() -> str:
    """What the README tells the user to generate: letters and digits, starting with a letter (nats-server parses
    an environment variable's value as a config value, so a bare number would not be a string)."""
    return "sd" + secrets.token_hex(24)


def streamd_command() -> list[str]:
    """The `streamd` console script of this interpreter's environment (what a user runs), else `python -m streamd`."""
    script = Path(sys.executable).parent / "streamd"
    return [str(script)] if script.exists() else [sys.executable, "-m", "streamd"]


SECRET_WORDS = re.compile(r"(?i)(?<![\w-])[\w-]*?(password|token)[ \t]*[:=][ \t]*[\"']?([^\s\"'#]+)")


def literal_secrets(text: str) -> list[str]:
    """Values given to *password/*token keys (any prefix: leaf-password, STREAMD_TOKEN) that are not environment
    references or empty: none may ship."""
    found = []
    for match in SECRET_WORDS.finditer(text):
        value = match.group(2)
        if "$" not in value and "%" not in value:  # $VAR and printf's %s are filled in at run time
            found.append(match.group(0))
    return found
