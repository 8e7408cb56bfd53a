"""deploy/kubernetes: schema-valid (kubernetes-validate, offline, strict), wired together, configs that load.

No cluster here: `kubectl apply/create --dry-run=client` needs an API server for discovery, so it cannot run; `kubectl
kustomize` (offline) checks that kubectl parses the files, kubernetes-validate checks every resource against the
Kubernetes OpenAPI schema, and the configs in the ConfigMaps are loaded by the real nats-server and streamd."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

from streamd.server.embedded import nats_server_binary
from streamd.server.settings import build
from tests.deploy.procs import clean_env
from tests.deploy.shipped import DEPLOY, leaf_password, literal_secrets, read

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the test extra has it)")

MANIFESTS = ("sidecar.yaml", "statefulset.yaml")
KUBECTL = shutil.which("kubectl")


def documents(name: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / name).read_text()) if d]
    assert all(isinstance(d, dict) for d in docs)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("name", MANIFESTS)
def test_kubernetes_schema(name: str) -> None:
    pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (the test extra has it)")
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(DEPLOY / "kubernetes" / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(" passed for resource ") == len(documents(name))


@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_kustomize_parses(tmp_path: Path) -> None:
    for name in MANIFESTS:
        shutil.copy(DEPLOY / "kubernetes" / name, tmp_path / name)
    (tmp_path / "kustomization.yaml").write_text("resources:\n" + "".join(f"- {n}\n" for n in MANIFESTS))
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert len(list(yaml.safe_load_all(done.stdout))) == sum(len(documents(n)) for n in MANIFESTS)


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


@pytest.mark.parametrize(("name", "kind"), [("sidecar.yaml", "Deployment"), ("statefulset.yaml", "StatefulSet")])
def test_workload_wiring(name: str, kind: str) -> None:
    docs = documents(name)
    assert literal_secrets((DEPLOY / "kubernetes" / name).read_text()) == []
    assert by_kind(docs, "Secret") == []  # the user creates streamd-leaf; no password ships
    (workload,) = by_kind(docs, kind)
    assert workload["spec"]["replicas"] == 1
    spec = pod_spec(workload)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert 10 < spec["terminationGracePeriodSeconds"] <= 60
    configmaps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    claims = {d["metadata"]["name"] for d in by_kind(docs, "PersistentVolumeClaim")}
    templates = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for volume in volumes.values():
        if "configMap" in volume:
            assert volume["configMap"]["name"] in configmaps
        if "persistentVolumeClaim" in volume:
            assert volume["persistentVolumeClaim"]["claimName"] in claims
    containers = {c["name"]: c for c in spec["containers"]}
    streamd = containers["streamd"]
    for mount in streamd["volumeMounts"]:
        assert mount["name"] in volumes or mount["name"] in templates, mount
        if "subPath" in mount:
            (cm,) = [configmaps[volumes[mount["name"]]["configMap"]["name"]]]
            assert mount["subPath"] in cm["data"]
    assert {"name": "data", "mountPath": "/data"} in streamd["volumeMounts"]
    assert ("data" in templates) == (kind == "StatefulSet")
    env = {e["name"]: e for e in streamd["env"]}
    assert env["STREAMD_LEAF_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "streamd-leaf", "key": "password"}
    assert env["STREAMD_DATA"]["value"] == "/data"
    # probes run the image's health check (deploy/container/healthcheck.py as /usr/local/bin/streamd-healthcheck)
    assert streamd["readinessProbe"]["exec"]["command"] == ["streamd-healthcheck"]
    assert streamd["livenessProbe"]["exec"]["command"] == ["streamd-healthcheck", "--live"]
    assert "streamd-healthcheck" in read("container/Containerfile")
    for container in containers.values():
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["capabilities"] == {"drop": ["ALL"]}
        assert "readinessProbe" in container and "livenessProbe" in container
    # streamd's settings: a ConfigMap key that streamd loads, attached to a server, the leaf user set, no password
    toml_path = env["STREAMD_CONFIG"]["value"]
    (mount,) = [m for m in streamd["volumeMounts"] if m["mountPath"] == toml_path]
    text = configmaps[volumes[mount["name"]]["configMap"]["name"]]["data"][mount["subPath"]]
    cfg = build(msgspec.toml.decode(text.encode()), {})
    assert cfg.server and cfg.leaf and cfg.leaf_user == "streamd" and not cfg.leaf_password


def test_sidecar_configs_are_the_shipped_ones() -> None:
    """The sidecar's streamd.toml is deploy/streamd.toml; its nats-server.conf differs in the client listen address."""
    (cm,) = by_kind(documents("sidecar.yaml"), "ConfigMap")
    assert cm["data"]["streamd.toml"] == read("streamd.toml")
    conf = cm["data"]["nats-server.conf"]
    assert "listen: 0.0.0.0:4222" in conf and "listen: 127.0.0.1:7422" in conf  # leafnodes on the pod's loopback
    assert "password: $STREAMD_LEAF_PASSWORD" in conf
    (workload,) = by_kind(documents("sidecar.yaml"), "Deployment")
    nats = {c["name"]: c for c in pod_spec(workload)["containers"]}["nats"]
    assert nats["image"].split(":")[0] == "nats"
    assert {e["name"]: e for e in nats["env"]}["STREAMD_LEAF_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == (
        "streamd-leaf"
    )


async def test_sidecar_nats_conf_loads(tmp_path: Path) -> None:
    """The real nats-server accepts the ConfigMap's config with the Secret's variable set, and refuses it without."""
    (cm,) = by_kind(documents("sidecar.yaml"), "ConfigMap")
    conf = tmp_path / "nats-server.conf"
    conf.write_text(cm["data"]["nats-server.conf"])
    for env, ok in ((clean_env(STREAMD_LEAF_PASSWORD=leaf_password()), True), (clean_env(), False)):
        proc = await asyncio.create_subprocess_exec(
            nats_server_binary(),
            "-t",
            "-c",
            str(conf),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        out, _ = await proc.communicate()
        assert (proc.returncode == 0) == ok, out.decode()
