"""The release: one version everywhere, a changelog that matches the schema, and a release
workflow, a CI check and a README that document the same build.

The build itself runs in `.ci/release-check` (manylinux2014 wheel and sdist, each installed in
a fresh venv and smoke-tested on a real PostgreSQL); GitHub Actions cannot run here, so its
workflow is parsed and checked against what that script and the README run.
"""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

import adk_postgres

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
RELEASE_CHECK = ROOT / ".ci" / "release-check"


def cargo_version() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())
    return cargo["workspace"]["package"]["version"]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def shell_assignment(script: Path, name: str) -> str:
    """The value of `NAME="..."` in a bash script (one line, double quotes)."""
    match = re.search(rf'^{name}="(.*)"$', script.read_text(), re.MULTILINE)
    assert match, f"{script.name} sets no {name}"
    return match.group(1)


def adk_requirement() -> str:
    deps = pyproject()["project"]["dependencies"]
    return next(d for d in deps if re.match(r"google-adk\b", d))


# -- one version ---------------------------------------------------------------------------------


def test_the_crates_inherit_the_workspace_version() -> None:
    for crate in ("rust/core/Cargo.toml", "rust/python/Cargo.toml"):
        package = tomllib.loads((ROOT / crate).read_text())["package"]
        assert package["version"] == {"workspace": True}, crate


def test_pyproject_takes_its_version_from_cargo() -> None:
    project = pyproject()["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]


def test_package_distribution_and_crate_versions_agree() -> None:
    version = cargo_version()
    assert adk_postgres.__version__ == version
    assert importlib.metadata.version("adk-postgres") == version


def test_cli_version_names_package_schema_and_adk() -> None:
    cli = Path(sys.executable).parent / "adk-postgres"
    out = subprocess.run([str(cli), "--version"], capture_output=True, text=True, check=True)
    line = out.stdout.strip()
    adk = importlib.metadata.version("google-adk")
    assert line.startswith(f"adk-postgres, version {cargo_version()} "), line
    assert f"schema version {adk_postgres.SCHEMA_VERSION}" in line
    assert f"google-adk {adk}" in line


# -- changelog -----------------------------------------------------------------------------------


def test_changelog_starts_with_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## (\S+)", text, re.MULTILINE)
    assert headings and headings[0] == cargo_version(), headings


def test_changelog_lists_every_schema_migration_of_this_release() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    newest = text.split("\n## ")[1]  # the first release section
    assert f"schema version {adk_postgres.SCHEMA_VERSION}" in newest
    migrations = sorted((ROOT / "rust/core/migrations").glob("V*__*.sql"))
    assert len(migrations) == adk_postgres.SCHEMA_VERSION
    for path in migrations:
        number, name = re.fullmatch(r"V(\d+)__(.+)\.sql", path.name).groups()
        assert re.search(rf"^- V{number} `{name}`", newest, re.MULTILINE), path.name


def test_supported_adk_range_is_stated_where_users_look() -> None:
    requirement = adk_requirement()
    stated = f"`{requirement.removeprefix('google-adk')}`"
    assert re.fullmatch(r"`>=\d+\.\d+\.\d+,<[\d.]+`", stated), "state the lowest version exactly"
    assert stated in (ROOT / "README.md").read_text()
    assert stated in (ROOT / "CHANGELOG.md").read_text()
    # Every other mention of google-adk in pyproject (extras) allows the same range.
    text = (ROOT / "pyproject.toml").read_text()
    for other in re.findall(r'"google-adk(?:\[\w+\])?([^"]*)"', text):
        assert other == requirement.removeprefix("google-adk"), other


# -- the build: README, CI script and workflow agree ---------------------------------------------


def test_readme_documents_the_release_build_that_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in ("RELEASE_BUILD", "SDIST_BUILD"):
        command = shell_assignment(RELEASE_CHECK, name)
        assert f'PATH="$PWD/.venv/bin:$PATH" {command}' in readme, name
    tools = shell_assignment(RELEASE_CHECK, "RELEASE_TOOLS")
    assert f".venv/bin/{tools}" in readme
    for tag in ("manylinux2014", "musllinux_1_2", "macosx", "sdist"):
        assert tag in readme.split("## Installing")[1].split("\n## ")[0], tag


def test_ci_runs_the_release_check() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r'^run "bash \.ci/release-check"$', ci, re.MULTILINE)


def test_release_tools_match_the_build_system_and_the_workflow() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    tools = shlex.split(shell_assignment(RELEASE_CHECK, "RELEASE_TOOLS"))
    assert tools[:2] == ["pip", "install"]
    pins = dict(re.fullmatch(r"([a-z]+)(.*)", spec).groups() for spec in tools[2:])
    assert pins["maturin"] == pyproject()["build-system"]["requires"][0].removeprefix("maturin")
    assert pins["ziglang"] == f"=={workflow['env']['ZIG_VERSION']}"
    maturin_pin = workflow["env"]["MATURIN_VERSION"]
    low, high = re.fullmatch(r">=([\d.]+),<(\d+)", pins["maturin"]).groups()
    as_tuple = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    assert as_tuple(low) <= as_tuple(maturin_pin) < (int(high),)


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def build_commands(job: dict) -> list[str]:
    return [
        line.strip()
        for step in job["steps"]
        for line in step.get("run", "").splitlines()
        if line.strip().startswith("maturin ")
    ]


def test_workflow_publishes_on_version_tags_only(workflow: dict) -> None:
    # PyYAML reads the key `on` as True.
    triggers = workflow[True]
    assert triggers["push"]["tags"] == ["v*"]
    publish = workflow["jobs"]["publish"]
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert set(publish["needs"]) == {"linux", "macos", "sdist", "smoke"}
    assert publish["permissions"] == {"id-token": "write"}
    assert any("pypa/gh-action-pypi-publish" in s.get("uses", "") for s in publish["steps"])


def test_workflow_builds_every_promised_linux_and_macos_wheel(workflow: dict) -> None:
    linux = workflow["jobs"]["linux"]["strategy"]["matrix"]["include"]
    assert {(m["target"], m["compatibility"]) for m in linux} == {
        ("x86_64-unknown-linux-gnu", "manylinux2014"),
        ("aarch64-unknown-linux-gnu", "manylinux2014"),
        ("x86_64-unknown-linux-musl", "musllinux_1_2"),
        ("aarch64-unknown-linux-musl", "musllinux_1_2"),
    }
    macos = workflow["jobs"]["macos"]["strategy"]["matrix"]["include"]
    assert {m["target"] for m in macos} == {"x86_64-apple-darwin", "aarch64-apple-darwin"}
    assert build_commands(workflow["jobs"]["sdist"]) == [
        shell_assignment(RELEASE_CHECK, "SDIST_BUILD")
    ]


def test_workflow_linux_build_is_the_documented_command(workflow: dict) -> None:
    documented = shell_assignment(RELEASE_CHECK, "RELEASE_BUILD")
    [command] = build_commands(workflow["jobs"]["linux"])
    for entry in workflow["jobs"]["linux"]["strategy"]["matrix"]["include"]:
        concrete = command.replace("${{ matrix.compatibility }}", entry["compatibility"])
        concrete = concrete.replace("${{ matrix.target }}", entry["target"])
        without_target = concrete.replace(f" --target {entry['target']}", "")
        if entry["target"] == "x86_64-unknown-linux-gnu":
            assert without_target == documented
        else:
            assert without_target == documented.replace("manylinux2014", entry["compatibility"])


def test_workflow_smoke_tests_every_supported_python(workflow: dict) -> None:
    smoke = workflow["jobs"]["smoke"]
    pythons = smoke["strategy"]["matrix"]["python"]
    requires = pyproject()["project"]["requires-python"]
    lowest = re.fullmatch(r">=(3\.\d+)", requires).group(1)
    assert pythons[0] == lowest
    assert len(pythons) >= 3
    script = "\n".join(step.get("run", "") for step in smoke["steps"])
    assert ".ci/release_smoke.py" in script
    assert "manylinux2014_x86_64" in script
    # The wheel is abi3 for the lowest Python, so one file serves every version in the matrix.
    assert pyproject()["tool"]["maturin"]["manifest-path"] == "rust/python/Cargo.toml"
    pyo3 = tomllib.loads((ROOT / "rust/python/Cargo.toml").read_text())["dependencies"]["pyo3"]
    assert f"abi3-py{lowest.replace('.', '')}" in pyo3["features"]
