"""The GitHub workflows call the Makefile's targets (so they cannot drift from what CI here runs),
and the repository's URL is written in one place (_config.yml) and copied nowhere else."""

import re
import subprocess
from pathlib import Path

import yaml

from lib.tooling.book import ROOT, html_dir

WORKFLOWS = ROOT / ".github" / "workflows"


def _workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_the_pages_workflow_builds_the_committed_notebooks_with_make_site_and_deploys_them():
    wf = _workflow("pages.yml")
    runs = [step["run"].strip() for step in _steps(wf) if "run" in step]
    assert runs == ["make site"], runs  # the Makefile's target, and nothing executed besides
    assert "site" in _make_targets()
    assert re.search(r"^site: .*\n\t\$\(PY\) -m lib book --committed$",
                     (ROOT / "Makefile").read_text(), flags=re.M)
    uploads = [s for s in _steps(wf) if s.get("uses", "").startswith("actions/upload-pages-artifact")]
    assert len(uploads) == 1
    assert ROOT / uploads[0]["with"]["path"] == html_dir("committed")
    assert any(s.get("uses", "").startswith("actions/deploy-pages") for s in _steps(wf))
    # published from the branch the Colab buttons open (_config.yml's repository.branch)
    assert wf[True]["push"]["branches"] == [_config()["repository"]["branch"]]  # YAML's `on`


def test_the_test_workflow_runs_ci_run_which_runs_the_readmes_test_command():
    wf = _workflow("test.yml")
    assert "pull_request" in wf[True]
    runs = [step["run"].strip() for step in _steps(wf) if "run" in step]
    assert runs[-1] == ".ci/run", runs
    job = next(iter(wf["jobs"].values()))
    assert job["container"].startswith("debian:")  # .ci/run installs Debian's packages
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "make test"
    assert "make test" in (ROOT / "README.md").read_text()
    assert "test" in _make_targets()


def test_the_repository_url_is_written_only_where_config_yml_has_it():
    url = _config()["repository"]["url"]
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    found = {}
    for name in files:
        path = ROOT / name
        if path.suffix in {".pt", ".safetensors", ".png", ".jpg", ".npz", ".bin"} or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for other in re.findall(r"https://github\.com/[\w.-]+/[\w.-]+", text):
            found.setdefault(other.rstrip("."), set()).add(name)
    assert set(found) <= {url}, {u: sorted(f) for u, f in found.items() if u != url}
    # the copies that must exist: the citation file and the setup cell of every chapter (its
    # template in lib.tooling.book reads _config.yml; tests/test_notebooks.py checks the cells)
    assert "CITATION.cff" in found.get(url, set())
    assert not Path(ROOT / "editions" / "README.md").read_text().count(url)
