"""Render deploy/k8s/kustomization.yaml in Python, the way `kubectl kustomize` does.

Only the features that kustomization uses are implemented, and an unknown
field is an error, so the kustomization cannot grow past what is checked here:
``resources`` (files), ``namespace``, ``labels`` (metadata only),
``configMapGenerator`` and ``secretGenerator`` (``files`` and ``envs``, with
kustomize's content-hash name suffix, and the references to them in pod specs
renamed), and ``images`` (``newName``/``newTag``/``digest``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "namespace", "labels", "resources", "configMapGenerator", "secretGenerator",
             "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass"}


def _go_json(value: Any) -> str:
    """Go's json.Marshal of a map: sorted keys, compact, HTML characters escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def name_hash(encoded: str) -> str:
    """kustomize's suffix: the first 10 hex digits of SHA-256, with some digits swapped for letters."""
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


def _env_file(path: Path) -> dict[str, str]:
    data = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        data[key.strip()] = value
    return data


def _base64(value: str) -> str:
    """kustomize's encoding of Secret data: base64, broken into 70-character lines past 70."""
    text = base64.b64encode(value.encode()).decode()
    if len(text) <= 70:
        return text
    return "\n".join(text[i:i + 70] for i in range(0, len(text), 70)) + "\n"


def _generated(kind: str, spec: dict[str, Any], root: Path) -> dict[str, Any]:
    unknown = set(spec) - {"name", "files", "envs"}
    if unknown:
        raise ValueError(f"{kind} generator: unsupported fields {sorted(unknown)}")
    data: dict[str, str] = {}
    for name in spec.get("files", []):
        data[Path(name).name] = (root / name).read_text()
    for name in spec.get("envs", []):
        data.update(_env_file(root / name))
    base = spec["name"]
    if kind == "ConfigMap":
        suffix = name_hash(_go_json({"kind": "ConfigMap", "name": "", "data": data}))
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{base}-{suffix}"}, "data": data}
    encoded = {key: _base64(value) for key, value in data.items()}
    suffix = name_hash(_go_json({"kind": "Secret", "type": "Opaque", "name": "", "data": encoded}))
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"{base}-{suffix}"}, "type": "Opaque",
            "data": encoded}


def _pod_specs(resource: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = resource.get("spec") or {}
    if resource["kind"] == "Pod":
        yield spec
    elif resource["kind"] == "CronJob":
        yield spec["jobTemplate"]["spec"]["template"]["spec"]
    elif "template" in spec:
        yield spec["template"]["spec"]


def _rename(holder: dict[str, Any], key: str, names: dict[str, str]) -> None:
    holder[key] = names.get(holder[key], holder[key])


def _rename_references(pod: dict[str, Any], configmaps: dict[str, str], secrets: dict[str, str]) -> None:
    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            _rename(volume["configMap"], "name", configmaps)
        if "secret" in volume:
            _rename(volume["secret"], "secretName", secrets)
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            if "secretKeyRef" in source:
                _rename(source["secretKeyRef"], "name", secrets)
            if "configMapKeyRef" in source:
                _rename(source["configMapKeyRef"], "name", configmaps)
        for env_from in container.get("envFrom", []):
            if "secretRef" in env_from:
                _rename(env_from["secretRef"], "name", secrets)
            if "configMapRef" in env_from:
                _rename(env_from["configMapRef"], "name", configmaps)


def _set_image(container: dict[str, Any], images: list[dict[str, str]]) -> None:
    name = container["image"].split("@")[0]
    name = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    for image in images:
        if image["name"] == name:
            unknown = set(image) - {"name", "newName", "newTag", "digest"}
            if unknown:
                raise ValueError(f"images: unsupported fields {sorted(unknown)}")
            new = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new}@{image['digest']}"
            else:
                container["image"] = f"{new}:{image['newTag']}" if "newTag" in image else new


def render(root: Path) -> list[dict[str, Any]]:
    """The resources `kubectl kustomize ROOT` prints, as dicts (order: generated, then listed)."""
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"kustomization.yaml: this renderer does not support {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for name in kustomization.get("resources", []):
        path = root / name
        if not path.is_file():
            raise ValueError(f"resources: {name} is not a file in {root} (no remote or directory bases)")
        resources += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    generated = [_generated("ConfigMap", spec, root) for spec in kustomization.get("configMapGenerator", [])]
    generated += [_generated("Secret", spec, root) for spec in kustomization.get("secretGenerator", [])]
    configmaps = {spec["name"]: g["metadata"]["name"]
                  for spec, g in zip(kustomization.get("configMapGenerator", []), generated, strict=False)}
    secrets = {spec["name"]: g["metadata"]["name"]
               for spec, g in zip(kustomization.get("secretGenerator", []),
                                  generated[len(configmaps):], strict=True)}
    out = []
    for resource in generated + resources:
        resource = copy.deepcopy(resource)
        metadata = resource.setdefault("metadata", {})
        if "namespace" in kustomization and resource["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = kustomization["namespace"]
        for entry in kustomization.get("labels", []):
            if entry.get("includeSelectors") or entry.get("includeTemplates"):
                raise ValueError("labels: only metadata labels are supported")
            metadata.setdefault("labels", {}).update(entry["pairs"])
        for pod in _pod_specs(resource):
            _rename_references(pod, configmaps, secrets)
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                _set_image(container, kustomization.get("images", []))
        out.append(resource)
    return out
