"""The documentation: the site builds with `mkdocs build --strict` (a broken link or anchor
between its pages fails it), the README's links resolve, and the reference pages generated
from the CRD and the CLI (hack/gen-reference.py) are up to date."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATOR = ROOT / "hack" / "gen-reference.py"


def _run(*args: str | Path, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    return subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, **kw)


def test_the_site_builds_strict_with_every_internal_link_resolved(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.exists(), "mkdocs is missing from the venv: make venv (the docs extra)"
    proc = _run(mkdocs, "build", "--strict", "--site-dir", tmp_path / "site")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    built = tmp_path / "site"
    # the quick start is the README's, included: a moved marker would leave the page empty
    assert "Run the demo" in (built / "getting-started" / "index.html").read_text()
    assert 'class="mermaid"' in (built / "concepts" / "index.html").read_text()


def test_a_broken_link_fails_the_strict_build(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs)
    (docs / "troubleshooting.md").write_text((docs / "troubleshooting.md").read_text() + "\n[gone](no-such-page.md)\n")
    config = (ROOT / "mkdocs.yml").read_text().replace("docs_dir: docs", f"docs_dir: {docs}")
    (tmp_path / "mkdocs.yml").write_text(config)
    proc = _run(Path(sys.executable).parent / "mkdocs", "build", "--strict", "-f", tmp_path / "mkdocs.yml",
                "--site-dir", tmp_path / "site")
    assert proc.returncode != 0 and "no-such-page.md" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_every_relative_link_in_the_readme_resolves():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not re.match(r"[a-z]+://|mailto:", link)]
    assert local, "the README links to the docs pages"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_the_readme_starts_with_the_two_commands():
    first_block = (ROOT / "README.md").read_text().split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.splitlines()[1:] if line.strip()]
    assert commands == ["make demo", "make test"], commands


def test_the_reference_pages_are_up_to_date():
    proc = _run(sys.executable, GENERATOR, "--check")
    assert proc.returncode == 0, proc.stderr + "\nrun: .venv/bin/python hack/gen-reference.py"


def test_a_stale_reference_page_is_noticed(tmp_path):
    shutil.copytree(ROOT / "docs" / "reference", tmp_path / "reference")
    page = tmp_path / "reference" / "crd.md"
    page.write_text(page.read_text().replace("`spec.replicas`", "`spec.replica`"))
    proc = _run(sys.executable, GENERATOR, "--check", "--dir", tmp_path / "reference")
    assert proc.returncode == 1 and "crd.md" in proc.stderr, proc.stderr


def test_the_reference_lists_every_spec_field_of_the_crd():
    import yaml

    crd = yaml.safe_load((ROOT / "crds" / "serving.kubento.io_modeldeployments.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    page = (ROOT / "docs" / "reference" / "crd.md").read_text()
    missing = [name for name in spec if f"| `spec.{name}` |" not in page]
    assert not missing, missing


# Absolute paths of someone's machine pasted into the docs (a working copy, a home directory):
# kubento's own fixed paths (/tmp/kubento-cluster, /var/lib/kubento, the images' /home/bentoml) are fine.
DEVELOPER_PATH = re.compile(r"(?<![\w.~$/-])/(?:work|root|Users|home/(?!bentoml\b|nonroot\b)[\w.-]+|tmp/pytest-)(?:/[^\s)`'\"]*)?")


def test_the_readme_and_docs_name_no_path_of_a_developers_machine():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "examples").rglob("*.md"))]
    found = [f"{p.relative_to(ROOT)}:{n}: {m.group(0)}" for p in pages
             for n, line in enumerate(p.read_text().splitlines(), 1) for m in DEVELOPER_PATH.finditer(line)]
    assert not found, "absolute paths of a developer's machine (use $PWD, ~ or a relative path):\n" + "\n".join(found)


def test_the_path_scan_finds_what_was_pasted_before():
    assert DEVELOPER_PATH.search("  export KUBECONFIG=/tmp/kubento-cluster/admin.kubeconfig PATH=/work/wt/docs/.venv/bin:$PATH")
    assert DEVELOPER_PATH.search("see /home/alice/src/kubento") and DEVELOPER_PATH.search("(/Users/bob/x)")
    assert not DEVELOPER_PATH.search("PATH=$PWD/.venv/bin:$PATH /tmp/kubento-cluster /var/lib/kubento/work "
                                     "/home/bentoml/bentoml ~/.cache/kubento")


def test_the_own_model_example_is_the_pages_project():
    text = (ROOT / "docs" / "models" / "deploy.md").read_text()
    blocks = {m.group(1): m.group(2) for m in re.finditer(r'^```\w+ title="([^"]+)"\n(.*?)^```', text, re.S | re.M)}
    assert blocks and all((ROOT / "examples" / path).read_text() == content for path, content in blocks.items())
