"""deploy/k8s against the Kubernetes API schemas of every version we support, and the table in
deploy/README.md ("What every node StatefulSet sets") against the manifests, field by field.

The schemas come with ``kubernetes-validate`` (offline, strict: unknown fields are errors, so a
misspelt ``readOnlyRootFileSystem`` fails here instead of being dropped by the API server).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# The Kubernetes minor versions deploy/README.md promises (keep the two in step).
SUPPORTED = [f"1.{minor}.0" for minor in range(29, 38)]
ALIASES = {"pod.": "spec.template.spec.", "node.": "spec.template.spec.containers[name=node]."}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def validate_documents(documents: list[dict[str, Any]]) -> None:
    """Every document is valid (strict) against every supported version's API schema."""
    for version in SUPPORTED:
        for document in documents:
            name = f"{document.get('kind')}/{document.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(document, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{name} is invalid for Kubernetes {version}: {exc}") from None


def test_readme_names_the_supported_versions() -> None:
    readme = (DEPLOY / "README.md").read_text()
    first, last = SUPPORTED[0].rsplit(".", 1)[0], SUPPORTED[-1].rsplit(".", 1)[0]
    assert f"Kubernetes {first} to {last}" in readme


def test_manifests_are_valid_for_every_supported_version() -> None:
    documents = _documents(DEPLOY / "k8s" / "pakr-nodes.yaml")
    assert len(documents) >= 12
    validate_documents(documents)


def test_a_broken_manifest_is_caught() -> None:
    """The validator is not a rubber stamp: a misspelt field and a wrong type both fail."""
    sts = next(
        d for d in _documents(DEPLOY / "k8s" / "pakr-nodes.yaml") if d["kind"] == "StatefulSet"
    )
    container = sts["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"]["readOnlyRootFileSystem"] = True  # misspelt
    with pytest.raises(AssertionError, match="invalid"):
        validate_documents([sts])
    del container["securityContext"]["readOnlyRootFileSystem"]
    sts["spec"]["replicas"] = "one"
    with pytest.raises(AssertionError, match="invalid"):
        validate_documents([sts])


# -- deploy/README.md's table ------------------------------------------------------------------


def _readme_table() -> list[tuple[str, str]]:
    """(field path, value) rows of the README's "What every node StatefulSet sets" table."""
    text = (DEPLOY / "README.md").read_text()
    after = text.split("What every node StatefulSet sets", 1)[1]
    section = next(block for block in after.split("\n\n") if block.startswith("|"))
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[1].startswith("`"):
            rows.append((cells[1].strip("`"), cells[2].strip("`")))
    return rows


def _resolve(document: Any, path: str) -> Any:
    """Follow ``a.b[0].c[name=x].d`` (with the README's ``pod.``/``node.`` shorthands)."""
    for alias, full in ALIASES.items():
        if path.startswith(alias):
            path = full + path.removeprefix(alias)
    value = document
    for part in re.findall(r"[^.\[\]]+|\[[^\]]+\]", path):
        if part.startswith("["):
            inner = part[1:-1]
            if "=" in inner:
                key, wanted = inner.split("=", 1)
                matches = [item for item in value if item.get(key) == wanted]
                assert len(matches) == 1, f"{path}: {inner} matches {len(matches)} items"
                value = matches[0]
            else:
                value = value[int(inner)]
        else:
            assert isinstance(value, dict) and part in value, f"{path}: no {part!r}"
            value = value[part]
    return value


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list) and isinstance(expected, str):
        return " ".join(str(a) for a in actual) == expected
    return bool(actual == expected)


def test_readme_table_matches_every_statefulset() -> None:
    rows = _readme_table()
    fields = " ".join(path for path, _ in rows)
    # The table covers what an operator relies on: probes, security contexts and storage.
    for needed in ("startupProbe", "readinessProbe", "livenessProbe", "runAsUser",
                   "readOnlyRootFilesystem", "allowPrivilegeEscalation", "capabilities",
                   "seccompProfile", "volumeClaimTemplates", "resources.requests"):  # fmt: skip
        assert needed in fields, f"README table says nothing about {needed}"
    sets = [d for d in _documents(DEPLOY / "k8s" / "pakr-nodes.yaml") if d["kind"] == "StatefulSet"]
    assert len(sets) == 5
    for sts in sets:
        for path, text in rows:
            expected = yaml.safe_load(text)
            actual = _resolve(sts, path)
            assert _same(actual, expected), (
                f"{sts['metadata']['name']}: {path} is {actual!r}, README says {text!r}"
            )


def test_readme_table_checker_notices_a_difference() -> None:
    sts = next(
        d for d in _documents(DEPLOY / "k8s" / "pakr-nodes.yaml") if d["kind"] == "StatefulSet"
    )
    path = "node.securityContext.readOnlyRootFilesystem"
    assert _same(_resolve(sts, path), True)
    sts["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFilesystem"
    ] = False
    assert not _same(_resolve(sts, path), True)
