"""Every Kubernetes manifest in deploy/ against the API schemas of one pinned Kubernetes version, offline (the JSON
schemas that the kubernetes-validate wheel bundles), strictly: an unknown or misspelt field fails, as kubectl's
strict field validation would. kustomization.yaml, which is kustomize's and not the API server's, is checked
against a schema of the fields it uses here and against the files beside it. A few cross-references (Service
selectors, ConfigMaps and Secrets by name, the StatefulSet's governing Service) are checked too."""
from __future__ import annotations

import copy
import socket
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kv

REPO = Path(__file__).resolve().parents[3]
DEPLOY = REPO / "deploy"
KUSTOMIZATION = "kustomization.yaml"
# The Kubernetes API the manifests must be valid for. kubernetes-validate validates against the newest bundled
# schema not newer than this; the test below fails when the installed wheel no longer ships it.
K8S_VERSION = "1.33"
# Objects the manifests name but that an operator creates (certificates, per-node tokens): see deploy/README.md.
EXTERNAL = {("Secret", "cloud-ingest-tls"), ("Secret", "cloud-ingest-ca"), ("Secret", "edge-tokens")}

# kustomize's own format (kustomize.config.k8s.io/v1beta1), for the fields used here; anything else is a typo
KUSTOMIZATION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["apiVersion", "kind", "resources"],
    "properties": {
        "apiVersion": {"const": "kustomize.config.k8s.io/v1beta1"},
        "kind": {"const": "Kustomization"},
        "namespace": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "resources": {"type": "array", "items": {"type": "string"}, "uniqueItems": True, "minItems": 1},
    },
}


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.y*ml") if p.name != KUSTOMIZATION)


def load_documents(text: str) -> list[dict]:
    """The documents of one YAML stream (empty ones, such as a trailing `---`, dropped)."""
    return [d for d in yaml.safe_load_all(text) if d is not None]


def schema_errors(doc: Any) -> list[str]:
    """Why `doc` is not a valid object of the pinned Kubernetes API ([] when it is). An object whose kind and
    apiVersion have no schema there (a typo, or an API version the server no longer serves) is an error too."""
    if not isinstance(doc, dict) or not isinstance(doc.get("kind"), str) or not isinstance(doc.get("apiVersion"), str):
        return [f"not a Kubernetes object (no kind/apiVersion): {str(doc)[:80]}"]
    try:
        kv.validate(doc, K8S_VERSION, strict=True)
    except kv.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top)"
        return [f"{where}: {exc.message}"]
    except kv.SchemaNotFoundError as exc:
        return [exc.message]
    return []


def file_errors(path: Path) -> list[str]:
    out = []
    for i, doc in enumerate(load_documents(path.read_text())):
        name = doc.get("metadata", {}).get("name", "?") if isinstance(doc, dict) else "?"
        out += [f"{path.name} #{i} {doc.get('kind') if isinstance(doc, dict) else '?'}/{name}: {e}"
                for e in schema_errors(doc)]
    return out


def kustomization_errors(kustomization: Any) -> list[str]:
    """Why `kustomization` is not kustomization.yaml as deploy/ needs it: its schema, and its resources are
    exactly the manifests beside it (a file left out would never be applied), the namespace first."""
    errors = [f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}"
              for e in jsonschema.Draft202012Validator(KUSTOMIZATION_SCHEMA).iter_errors(kustomization)]
    if errors:
        return errors
    listed, present = sorted(kustomization["resources"]), [p.name for p in manifest_files()]
    if listed != present:
        errors.append(f"resources {listed} != the manifests in deploy/ {present}")
    if kustomization["resources"][0] != "namespace.yaml":
        errors.append("namespace.yaml is not the first resource")
    return errors


def all_objects() -> Iterator[tuple[str, dict]]:
    for path in manifest_files():
        for doc in load_documents(path.read_text()):
            yield path.name, doc


def pod_templates() -> Iterator[tuple[str, dict]]:
    for _, doc in all_objects():
        template = doc.get("spec", {}).get("template")
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job") and template:
            yield f"{doc['kind']}/{doc['metadata']['name']}", template


def find(kind: str, name: str) -> dict:
    for _, doc in all_objects():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind}/{name} in deploy/")


# ------------------------------------------------------------------------------------------- the real files
def test_the_pinned_kubernetes_version_is_bundled_by_the_installed_validator():
    assert f"{K8S_VERSION}.0" in kv.all_versions(), f"kubernetes-validate ships {kv.all_versions()}"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_every_document_of_every_manifest_is_valid_against_the_kubernetes_schema(path):
    docs = load_documents(path.read_text())
    assert docs, f"{path.name} holds no document"
    errors = file_errors(path)
    assert not errors, "\n".join(errors)


def test_the_schema_check_opens_no_network_connection(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"the schema check tried to connect: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    assert file_errors(DEPLOY / "galera.yaml") == []


def test_the_kustomization_lists_every_manifest_and_only_those():
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())
    assert kustomization_errors(kustomization) == []
    assert kustomization["namespace"] == find("Namespace", kustomization["namespace"])["metadata"]["name"]


def test_every_service_selects_the_pods_of_some_workload():
    templates = list(pod_templates())
    for _, doc in all_objects():
        if doc["kind"] != "Service":
            continue
        selector = doc["spec"]["selector"]
        matched = [w for w, t in templates if selector.items() <= t.get("metadata", {}).get("labels", {}).items()]
        assert matched, f"Service/{doc['metadata']['name']} selects {selector}, which no pod template carries"


def test_every_configmap_and_secret_a_pod_uses_is_defined_or_listed_as_external():
    defined = {(doc["kind"], doc["metadata"]["name"]) for _, doc in all_objects()} | EXTERNAL
    for workload, template in pod_templates():
        spec = template["spec"]
        used = set()
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                used.add(("ConfigMap", vol["configMap"]["name"]))
            if "secret" in vol:
                used.add(("Secret", vol["secret"]["secretName"]))
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for src in c.get("envFrom", []):
                if "secretRef" in src:
                    used.add(("Secret", src["secretRef"]["name"]))
                if "configMapRef" in src:
                    used.add(("ConfigMap", src["configMapRef"]["name"]))
        assert used <= defined, f"{workload} uses {sorted(used - defined)}, defined nowhere in deploy/"


def test_the_galera_statefulset_has_three_nodes_a_headless_service_a_pdb_and_the_wsrep_settings():
    sts = find("StatefulSet", "galera")
    assert sts["spec"]["replicas"] == 3
    peers = find("Service", sts["spec"]["serviceName"])
    assert peers["spec"]["clusterIP"] == "None", "the governing Service must be headless (stable pod names)"
    assert peers["spec"]["publishNotReadyAddresses"] is True, "joiners must resolve peers that are not ready yet"
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    pdb = find("PodDisruptionBudget", "galera")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1, "a drain may take one node of three, never the quorum"
    cnf = find("ConfigMap", "galera-config")["data"]["galera.cnf"]
    for setting in ("binlog_format=ROW", "default_storage_engine=InnoDB", "innodb_autoinc_lock_mode=2",
                    "wsrep_on=ON", "wsrep_sst_method=mariabackup"):
        assert setting in cnf.splitlines(), setting
    members = f"gcomm://{','.join(f'galera-{i}.galera-peers' for i in range(3))}"
    assert f"wsrep_cluster_address={members}" in cnf.splitlines()
    db_url = find("Secret", "cloud-db")["stringData"]["DB_URL"]
    assert "@galera.edgert.svc:3306/" in db_url, f"the cloud does not point at the Galera Service: {db_url}"
    find("Service", "galera")


# ------------------------------------------------------------------------------------------- the check fails
def _galera_sts() -> dict:
    return copy.deepcopy(find("StatefulSet", "galera"))


def _typo_in_spec(d):
    d["spec"]["replica"] = d["spec"].pop("replicas")


def _replicas_as_text(d):
    d["spec"]["replicas"] = "three"


def _port_as_text(d):
    d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "3306"


def _unknown_container_field(d):
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"


def _no_selector(d):
    del d["spec"]["selector"]


def _retired_api_version(d):
    d["apiVersion"] = "apps/v1beta1"  # StatefulSet's, removed in Kubernetes 1.16


def _probe_as_list(d):
    d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = ["bash", "/etc/galera/synced.sh"]


@pytest.mark.parametrize("break_it", [_typo_in_spec, _replicas_as_text, _port_as_text, _unknown_container_field,
                                      _no_selector, _retired_api_version, _probe_as_list],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_broken_manifest_fails_the_schema_check(break_it):
    doc = _galera_sts()
    assert schema_errors(doc) == []
    break_it(doc)
    assert schema_errors(doc), f"{break_it.__name__} passed the check"


@pytest.mark.parametrize("good, bad", [
    ("  replicas: 3\n", "  replica: 3\n"),
    ("  maxUnavailable: 1\n", "  maxUnavailable: [1]\n"),
    ("  clusterIP: None\n", "  clusterIp: None\n"),
    ("kind: PodDisruptionBudget\n", "kind: PodDisruptionBudgets\n"),
], ids=["typo-replicas", "list-for-int", "field-case", "unknown-kind"])
def test_a_typo_in_the_galera_file_fails_the_check(tmp_path, good, bad):
    text = (DEPLOY / "galera.yaml").read_text()
    assert text.count(good) == 1, good
    broken = tmp_path / "galera.yaml"
    broken.write_text(text.replace(good, bad))
    assert file_errors(broken), f"{bad.strip()!r} passed the check"


@pytest.mark.parametrize("break_it", [
    lambda k: k.update(resource=k.pop("resources")),
    lambda k: k["resources"].remove("galera.yaml"),
    lambda k: k["resources"].append("galera-old.yaml"),
    lambda k: k.update(namespace=["edgert"]),
    lambda k: k["resources"].reverse(),
], ids=["typo", "file-left-out", "file-absent", "namespace-type", "namespace-not-first"])
def test_a_broken_kustomization_fails_the_check(break_it):
    kustomization = yaml.safe_load((DEPLOY / KUSTOMIZATION).read_text())
    break_it(kustomization)
    assert kustomization_errors(kustomization)
