"""What the package layout promises its users: the client library and the admin CLI stay light, old paths work."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "statement",
    ["import streamd.client.jobs", "import streamd.client.replay", "import streamd.jobs", "import streamd.cli.app"],
)
def test_client_library_and_admin_cli_never_load_the_server(statement: str) -> None:
    loaded = _loaded_after(statement)
    heavy = {m for m in loaded if m == "lmdb" or m.startswith(("streamd.server.service", "streamd.store"))}
    assert not heavy, f"{statement} loads {sorted(heavy)}"


def test_old_import_paths_are_the_same_objects() -> None:
    import streamd.client.jobs
    import streamd.client.replay
    import streamd.jobs
    import streamd.replay

    assert streamd.jobs.Queue is streamd.client.jobs.Queue
    assert streamd.replay.replay is streamd.client.replay.replay
    assert set(streamd.jobs.__all__) == set(streamd.client.jobs.__all__)


def test_the_package_root_still_offers_the_service() -> None:
    import streamd
    from streamd.server.service import Service

    assert streamd.Service is Service
    with pytest.raises(AttributeError):
        _ = streamd.NoSuchThing  # type: ignore[attr-defined]
