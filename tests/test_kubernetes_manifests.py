"""deploy/kubernetes/: every manifest against the Kubernetes schemas, then what schemas cannot see.

Schema validation uses ``kubernetes-validate`` (a dev dependency), which
bundles the OpenAPI-derived JSON schemas: it runs offline, against the pinned
:data:`KUBERNETES_VERSION`, in strict mode (an unknown field is an error, so
a typo such as ``readinessprobe`` cannot pass silently). ``kustomization.yaml``
is not a Kubernetes object; it is *rendered* here the way ``kubectl apply -k``
would for what this directory uses (resources, a namespace, and a
``configMapGenerator`` whose ConfigMaps hold files), and the rendered
ConfigMaps are validated like every other object.

The semantic checks are functions returning a list of problems, so that the
negative tests can show each one catches a broken manifest:

* the key Secret is mounted with ``defaultMode: 0400``;
* every probe of the boot node is ``GET /healthz`` on the container port
  the node's HTTP API listens on (``http_listen`` of the ConfigMap's
  ``boot.toml``), and the WebSocket port is the one it listens on;
* the per-pod Services select exactly the StatefulSet's pod names
  (``statefulset.kubernetes.io/pod-name`` = ``<name>-<ordinal>``);
* the nginx ConfigMap is generated from ``nginx/status-cache.conf``, the
  file the NAT lab includes (:data:`tests.lab.status_cache.STATUS_CACHE_CONF`);
* the boot node's environment and ``boot.toml`` load through the real
  config loader (the CLI's, with the boot profile) into the intended config.
"""

from __future__ import annotations

import argparse
import copy
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is missing (pip install -e '.[dev]')")
yaml = pytest.importorskip("yaml", reason="PyYAML is missing (kubernetes-validate needs it)")

from tests.lab.status_cache import STATUS_CACHE_CONF  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"
"""The Kubernetes version the manifests must be valid for (a release still widely run)."""

Manifest = dict[str, Any]


# --- rendering kustomization.yaml ------------------------------------------------------


def _documents(path: Path) -> list[Manifest]:
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def kustomization() -> Manifest:
    doc = _documents(K8S / "kustomization.yaml")
    assert len(doc) == 1, "kustomization.yaml must be one document"
    return doc[0]


def generated_configmaps(kust: Manifest) -> list[Manifest]:
    """The ConfigMaps of ``configMapGenerator``: one key per file (its base name)."""
    maps = []
    for generator in kust.get("configMapGenerator", []):
        data = {Path(name).name: (K8S / name).read_text(encoding="utf-8")
                for name in generator["files"]}
        maps.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"]}, "data": data})
    return maps


def render() -> list[Manifest]:
    """What ``kubectl apply -k deploy/kubernetes`` applies (without the name hashes)."""
    kust = kustomization()
    objects = [doc for name in kust["resources"] for doc in _documents(K8S / name)]
    objects += generated_configmaps(kust)
    for obj in objects:
        if obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = kust["namespace"]
    return objects


def find(objects: list[Manifest], kind: str, name: str | None = None) -> Manifest:
    matches = [o for o in objects if o["kind"] == kind
               and (name is None or o["metadata"]["name"] == name)]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]


# --- the semantic checks -----------------------------------------------------------------


def _boot_container(sts: Manifest) -> Manifest:
    containers = sts["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "autonat")


def _port(container: Manifest, name_or_number: str | int) -> int | None:
    if isinstance(name_or_number, int):
        return name_or_number
    return next((p["containerPort"] for p in container.get("ports", [])
                 if p.get("name") == name_or_number), None)


def _boot_toml(objects: list[Manifest]) -> str:
    return str(find(objects, "ConfigMap", "autonat-boot-config")["data"]["boot.toml"])


def secret_mode_problems(objects: list[Manifest]) -> list[str]:
    problems = []
    for sts in (o for o in objects if o["kind"] == "StatefulSet"):
        for volume in sts["spec"]["template"]["spec"].get("volumes", []):
            secret = volume.get("secret")
            if secret is not None and secret.get("defaultMode") != 0o400:
                problems.append(f"Secret volume {volume['name']} has defaultMode "
                                f"{secret.get('defaultMode')!r}, not 0400")
    return problems


def probe_problems(objects: list[Manifest]) -> list[str]:
    """Probes on ``/healthz`` at the node's HTTP port; the ``ws`` port is the listen port."""
    import tomllib

    sts = find(objects, "StatefulSet", "autonat-boot")
    container = _boot_container(sts)
    settings = tomllib.loads(_boot_toml(objects))
    http_port = int(settings["http"]["http_listen"].rpartition(":")[2])
    listen_port = int(settings["node"]["listen"][0].split("/tcp/")[1].split("/")[0])
    problems = []
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe is None:
            problems.append(f"{kind} is missing")
            continue
        get = probe.get("httpGet", {})
        if get.get("path") != "/healthz":
            problems.append(f"{kind} asks {get.get('path')!r}, not /healthz")
        if _port(container, get.get("port")) != http_port:
            problems.append(f"{kind} port {get.get('port')!r} is not the HTTP API's "
                            f"port {http_port} (http_listen in boot.toml)")
    if _port(container, "ws") != listen_port:
        problems.append(f"container port ws is not the listen port {listen_port}")
    return problems


def pod_service_problems(objects: list[Manifest]) -> list[str]:
    """One LoadBalancer Service per StatefulSet pod, selecting exactly that pod."""
    sts = find(objects, "StatefulSet", "autonat-boot")
    name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    pods = {f"{name}-{ordinal}" for ordinal in range(replicas)}
    selected: dict[str, str] = {}
    problems = []
    for svc in (o for o in objects if o["kind"] == "Service"):
        pod = svc["spec"].get("selector", {}).get("statefulset.kubernetes.io/pod-name")
        if pod is None:
            continue
        svc_name = svc["metadata"]["name"]
        if pod not in pods:
            problems.append(f"Service {svc_name} selects pod {pod}, which the StatefulSet "
                            f"{name} ({replicas} replicas) never creates")
        if svc["spec"].get("type") != "LoadBalancer":
            problems.append(f"Service {svc_name} is not a LoadBalancer")
        if svc["spec"].get("externalTrafficPolicy") != "Local":
            problems.append(f"Service {svc_name} does not keep client IPs "
                            "(externalTrafficPolicy: Local)")
        for port in svc["spec"]["ports"]:
            if _port(_boot_container(sts), port.get("targetPort", port["port"])) is None:
                problems.append(f"Service {svc_name} targets port {port.get('targetPort')!r}, "
                                "which the boot container does not name")
        selected[pod] = svc_name
    problems += [f"pod {pod} has no Service of its own" for pod in sorted(pods - set(selected))]
    return problems


def nginx_config_problems(objects: list[Manifest]) -> list[str]:
    """The nginx ConfigMap holds the lab's file, and nginx mounts it where it reads conf.d."""
    problems = []
    kust = kustomization()
    generator = next((g for g in kust.get("configMapGenerator", [])
                      if g["name"] == "autonat-status-nginx"), None)
    if generator is None:
        return ["no configMapGenerator autonat-status-nginx"]
    files = {(K8S / name).resolve() for name in generator["files"]}
    if STATUS_CACHE_CONF.resolve() not in files:
        problems.append(f"the nginx ConfigMap is not generated from {STATUS_CACHE_CONF}, "
                        "the file the NAT lab runs")
    deployment = find(objects, "Deployment", "autonat-status")
    spec = deployment["spec"]["template"]["spec"]
    volume = next((v["name"] for v in spec.get("volumes", [])
                   if v.get("configMap", {}).get("name") == "autonat-status-nginx"), None)
    mounts = {m["name"]: m["mountPath"] for c in spec["containers"]
              for m in c.get("volumeMounts", [])}
    if volume is None or mounts.get(volume) != "/etc/nginx/conf.d":
        problems.append("nginx does not mount the autonat-status-nginx ConfigMap at "
                        "/etc/nginx/conf.d")
    return problems


# --- schema validation ---------------------------------------------------------------------


def _objects_with_names() -> Iterator[tuple[str, Manifest]]:
    for obj in render():
        yield f"{obj['kind']}/{obj['metadata']['name']}", obj


def test_every_yaml_file_is_a_resource_of_the_kustomization() -> None:
    kust = kustomization()
    on_disk = {p.relative_to(K8S).as_posix() for p in K8S.rglob("*.yaml")}
    assert on_disk == {"kustomization.yaml", *kust["resources"]}, (
        "every manifest under deploy/kubernetes must be applied (and so validated)")
    for generator in kust["configMapGenerator"]:
        for name in generator["files"]:
            assert (K8S / name).is_file(), f"{generator['name']}: {name} is missing"


@pytest.mark.parametrize(("name", "obj"), list(_objects_with_names()))
def test_manifest_is_valid_for_kubernetes(name: str, obj: Manifest) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_the_cluster_has_every_part() -> None:
    objects = render()
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    for needed in [("StatefulSet", "autonat-boot"), ("Deployment", "autonat-status"),
                   ("Service", "autonat-status"), ("PodDisruptionBudget", "autonat-boot"),
                   ("ConfigMap", "autonat-boot-config"), ("ConfigMap", "autonat-status-nginx")]:
        assert needed in kinds
    sts = find(objects, "StatefulSet", "autonat-boot")
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    for workload in (sts, find(objects, "Deployment", "autonat-status")):
        spec = workload["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["requests"], container["name"]
            assert container["resources"]["limits"]["memory"], container["name"]


def test_a_broken_manifest_fails_validation() -> None:
    sts = copy.deepcopy(find(render(), "StatefulSet", "autonat-boot"))
    sts["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES_VERSION, strict=True)


def test_a_misspelled_field_fails_strict_validation() -> None:
    sts = copy.deepcopy(find(render(), "StatefulSet", "autonat-boot"))
    container = _boot_container(sts)
    container["readinessprobe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(sts, KUBERNETES_VERSION, strict=True)


# --- semantic checks, each with a broken copy it must catch ---------------------------------


def test_the_key_secret_is_mounted_0400() -> None:
    objects = render()
    assert secret_mode_problems(objects) == []
    broken = copy.deepcopy(objects)
    for volume in find(broken, "StatefulSet")["spec"]["template"]["spec"]["volumes"]:
        if "secret" in volume:
            volume["secret"]["defaultMode"] = 0o444
    assert secret_mode_problems(broken) == ["Secret volume keys has defaultMode 292, not 0400"]


def test_probes_ask_healthz_on_the_nodes_http_port() -> None:
    objects = render()
    assert probe_problems(objects) == []
    broken = copy.deepcopy(objects)
    container = _boot_container(find(broken, "StatefulSet"))
    container["livenessProbe"]["httpGet"]["port"] = "ws"
    container["readinessProbe"]["httpGet"]["path"] = "/status"
    assert probe_problems(broken) == [
        "readinessProbe asks '/status', not /healthz",
        "livenessProbe port 'ws' is not the HTTP API's port 7888 (http_listen in boot.toml)"]
    config = find(broken, "ConfigMap", "autonat-boot-config")
    config["data"]["boot.toml"] = config["data"]["boot.toml"].replace("0.0.0.0:7888",
                                                                      "0.0.0.0:8000")
    assert len(probe_problems(broken)) == 4  # every probe now misses the HTTP API


def test_each_pod_has_its_own_load_balancer_service() -> None:
    objects = render()
    assert pod_service_problems(objects) == []
    scaled = copy.deepcopy(objects)
    find(scaled, "StatefulSet")["spec"]["replicas"] = 4
    assert pod_service_problems(scaled) == ["pod autonat-boot-3 has no Service of its own"]
    typo = copy.deepcopy(objects)
    find(typo, "Service", "autonat-boot-2")["spec"]["selector"][
        "statefulset.kubernetes.io/pod-name"] = "autonat-boot2"
    assert pod_service_problems(typo) == [
        "Service autonat-boot-2 selects pod autonat-boot2, which the StatefulSet autonat-boot "
        "(3 replicas) never creates",
        "pod autonat-boot-2 has no Service of its own"]


def test_nginx_runs_the_labs_configuration_file() -> None:
    objects = render()
    assert nginx_config_problems(objects) == []
    data = find(objects, "ConfigMap", "autonat-status-nginx")["data"]
    assert data["status-cache.conf"] == STATUS_CACHE_CONF.read_text(encoding="utf-8")
    assert re.search(r"upstream autonat_boot\b", data["upstream.conf"])
    broken = copy.deepcopy(objects)
    spec = find(broken, "Deployment", "autonat-status")["spec"]["template"]["spec"]
    spec["containers"][0]["volumeMounts"][0]["mountPath"] = "/etc/nginx"
    assert nginx_config_problems(broken) == [
        "nginx does not mount the autonat-status-nginx ConfigMap at /etc/nginx/conf.d"]


def test_the_boot_nodes_settings_load_with_the_cli_loader(tmp_path: Path) -> None:
    """boot.toml and the container's AUTONAT_* variables, through the CLI's loader."""
    from actors.node import save_keypair
    from actors.surfaces._cli_settings import load_node_config
    from protocols import Keypair

    objects = render()
    container = _boot_container(find(objects, "StatefulSet", "autonat-boot"))
    (tmp_path / "boot.toml").write_text(_boot_toml(objects), encoding="utf-8")
    key = tmp_path / "p2p_keypair.ser"
    save_keypair(key, Keypair.generate())
    moved = {"/etc/autonat/config/boot.toml": tmp_path / "boot.toml",
             "/run/autonat/p2p_keypair.ser": key, "/var/lib/autonat": tmp_path / "data"}
    environ = {}
    for var in container["env"]:
        if "value" in var:
            value = var["value"].replace("$(POD_NAME)", "autonat-boot-1")
            environ[var["name"]] = str(moved.get(value, value))
    loaded = load_node_config(argparse.Namespace(), profile="boot", environ=environ)
    assert loaded.warnings == ()
    config = loaded.config
    assert config.http.http_listen == "0.0.0.0:7888"
    assert config.key_file == key
    assert config.data_dir == tmp_path / "data"
    assert config.stun_addresses() is None
    assert [str(a) for a in config.announce_addrs] == [
        "/dns4/autonat-boot-1.boot.example.org/tcp/44000/ws"]


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is missing (its kustomize cross-checks the rendering here)")
def test_kubectls_own_rendering_agrees_and_is_valid() -> None:
    """Where kubectl is installed, ``kubectl kustomize`` (what ``apply -k`` sends) gives the
    same objects as :func:`render` - ConfigMap names with kustomize's hash suffix,
    references to them rewritten - and every one is valid too."""
    out = subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    theirs = [doc for doc in yaml.safe_load_all(out.stdout) if doc is not None]
    generated = {g["name"] for g in kustomization()["configMapGenerator"]}

    def key(obj: Manifest) -> tuple[str, str]:
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            name = next((g for g in generated if re.fullmatch(rf"{g}-[a-z0-9]{{10}}", name)),
                        name)
        return obj["kind"], name

    assert sorted(key(o) for o in theirs) == sorted(key(o) for o in render())
    for obj in theirs:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    volumes = find(theirs, "StatefulSet")["spec"]["template"]["spec"]["volumes"]
    config = next(v for v in volumes if v["name"] == "config")["configMap"]["name"]
    assert config.startswith("autonat-boot-config-")
