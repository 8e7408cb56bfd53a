from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from typer.testing import CliRunner

from streamd.cli.app import app
from streamd.server.settings import ServiceConfig, SyncMode, build, load_toml, redact


def test_file_then_overrides(tmp_path: Path) -> None:
    conf = tmp_path / "streamd.toml"
    conf.write_text('server = "nats://10.0.0.1:4222"\ndata = "/srv/d"\nsync = "never"\nmax-pending-msgs = 5\n')
    cfg = build(load_toml(conf), {"data": "/other", "sync": None})
    assert cfg == ServiceConfig(
        server="nats://10.0.0.1:4222", data=Path("/other"), sync=SyncMode.NEVER, max_pending_msgs=5
    )
    assert cfg.api_prefix == "$JS.API"
    assert build({}, {"domain": "edge"}).api_prefix == "$JS.edge.API"


def test_unknown_keys_and_bad_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(msgspec.ValidationError, match="max-pendings"):
        build({"max-pendings": 1}, {})
    with pytest.raises(msgspec.ValidationError):
        build({"sync": "sometimes"}, {})


def test_the_deploy_sample_is_valid() -> None:
    """The shipped sample attaches to deploy/nats-server.conf and holds no secret (they come from the environment)."""
    sample = Path(__file__).resolve().parents[2] / "deploy" / "streamd.toml"
    cfg = build(load_toml(sample), {})
    assert cfg.server == "nats://127.0.0.1:4222" and cfg.leaf == "nats-leaf://127.0.0.1:7422"
    assert (cfg.password, cfg.token, cfg.leaf_password) == ("", "", "")


def test_credentials_are_redacted() -> None:
    assert redact("nats://user:secret@host:4222") == "nats://***@host:4222"
    assert redact("nats://host:4222") == "nats://host:4222"


def test_cli_bad_config_is_one_line(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text("sync = 'sometimes'\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(conf)])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("streamd: bad configuration")


def test_atomic_batch_limits_are_settings_and_must_be_positive() -> None:
    cfg = build({"atomic-max-msgs": 10, "atomic-timeout": 0.5}, {})
    assert (cfg.atomic_max_msgs, cfg.atomic_timeout, cfg.atomic_inflight_per_stream) == (10, 0.5, 50)
    for bad in ({"atomic-max-msgs": 0}, {"atomic-timeout": 0}, {"atomic-max-bytes": -1}):
        with pytest.raises((ValueError, msgspec.ValidationError)):
            build(bad, {})
