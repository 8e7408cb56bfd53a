#!/usr/bin/env python3
"""Generate the leafnode password once, for compose.yaml's `leaf-secret` service (or by hand: `leaf-secret.py DIR`).

Writes into DIR, only if DIR/leaf-password does not exist yet (later starts keep the first password):
  leaf-password        the password alone, for streamd (STREAMD_LEAF_PASSWORD), owned by --owner UID, mode 0400
  leaf-password.conf   `password: "..."`, included by nats-server.conf's leafnodes authorization, mode 0400
The password is random (secrets.token_hex), letters and digits only, and printed nowhere.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path


def write(path: Path, text: str, owner: int | None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner is not None:
        os.chown(tmp, owner, -1)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path)
    parser.add_argument("--owner", type=int, default=None, help="uid to own leaf-password (streamd's: 10001)")
    args = parser.parse_args(argv)
    target: Path = args.dir
    if (target / "leaf-password").exists() and (target / "leaf-password.conf").exists():
        sys.stdout.write(f"leaf-secret: kept the password in {target}\n")
        return 0
    password = "sd" + secrets.token_hex(24)
    target.mkdir(parents=True, exist_ok=True)
    write(target / "leaf-password.conf", f'password: "{password}"\n', None)
    write(target / "leaf-password", password, args.owner)  # last: its presence means both are complete
    sys.stdout.write(f"leaf-secret: wrote a new random password to {target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
