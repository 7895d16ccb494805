"""The services' Dockerfiles checked without an engine: hadolint, and the rules we build by."""

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.containers.deployment import (
    REPO_ROOT,
    SHARED_PACKAGE,
    Instruction,
    app_services,
    dockerfile_instructions,
    dockerignore_allows,
    dockerignore_patterns,
    exec_form,
    healthcheck_command,
    load_compose,
    only,
)

SERVICES = app_services(load_compose())
DOCKERFILES = {package: REPO_ROOT / package / "Dockerfile" for package in SERVICES.values()}
# Development-only modules inside a copied package: never imported when the service runs.
DEV_ONLY_MODULES: dict[str, str] = {}
SECRET_WORDS = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE", re.IGNORECASE)


def instructions_of(package: str) -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILES[package])


def copied_sources(instructions: list[Instruction]) -> list[str]:
    """Return the build-context paths every COPY instruction takes (destination dropped)."""
    sources = []
    for instruction in instructions:
        if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
            sources.extend(instruction.args.split()[:-1])
    return sources


def test_dockerfiles_pass_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), *map(str, DOCKERFILES.values())], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("package", sorted(DOCKERFILES))
def test_base_image_is_slim_python_pinned_to_the_locked_version(package):
    image = only(instructions_of(package), "FROM").args
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-[a-z]+)?", image)
    assert match, f"pin an official slim Python image by full version, not {image}"
    # requirements.txt is compiled for this Python (make lock's --python-version).
    locked = re.search(r"--python-version (\d+)\.(\d+)", (REPO_ROOT / "Makefile").read_text())
    assert match.group(1, 2) == locked.group(1, 2)


@pytest.mark.parametrize("package", sorted(DOCKERFILES))
def test_runs_as_a_non_root_user(package):
    instructions = instructions_of(package)
    user = only(instructions, "USER").args.split(":")[0]
    assert user not in {"root", "0"}
    assert instructions.index(only(instructions, "USER")) < instructions.index(
        only(instructions, "CMD")
    )


@pytest.mark.parametrize("package", sorted(DOCKERFILES))
def test_command_healthcheck_and_stop_signal(package):
    instructions = instructions_of(package)
    assert exec_form(only(instructions, "CMD").args) == ["python", "-m", package]
    assert healthcheck_command(instructions) == ["python", "-m", package, "healthcheck"]
    assert only(instructions, "STOPSIGNAL").args == "SIGTERM"
    assert not [i for i in instructions if i.keyword == "ENTRYPOINT"]


@pytest.mark.parametrize("package", sorted(DOCKERFILES))
def test_no_secret_is_baked_into_the_image(package):
    for instruction in instructions_of(package):
        if instruction.keyword in {"ENV", "ARG", "LABEL"}:
            assert not SECRET_WORDS.search(instruction.args), instruction
    assert not dockerignore_allows(".env", dockerignore_patterns())


@pytest.mark.parametrize("package", sorted(DOCKERFILES))
def test_dependencies_are_installed_in_a_layer_before_the_source(package):
    instructions = instructions_of(package)
    steps = [(i.keyword, i.args) for i in instructions]
    requirements_copy = next(
        n for n, (k, a) in enumerate(steps) if k == "COPY" and "requirements.txt" in a
    )
    requirements_install = next(
        n for n, (k, a) in enumerate(steps) if k == "RUN" and "-r /src/requirements.txt" in a
    )
    first_source = next(
        n for n, (k, a) in enumerate(steps) if k == "COPY" and f"{SHARED_PACKAGE}/" in a
    )
    assert requirements_copy < requirements_install < first_source
    assert "requirements-dev" not in " ".join(a for _, a in steps), "dev tools stay out"
    project_install = next(n for n, (k, a) in enumerate(steps) if k == "RUN" and "--no-deps" in a)
    assert project_install > first_source


def test_both_dockerfiles_are_one_recipe_with_the_service_name_and_ports():
    """Two Dockerfiles (one per compose build) that may not drift apart."""
    texts = []
    for package, path in sorted(DOCKERFILES.items()):
        text = path.read_text().splitlines()[3:]  # the opening comment names the service
        expose = only(instructions_of(package), "EXPOSE").args
        texts.append("\n".join(text).replace(package, "<service>").replace(expose, "<ports>"))
    assert len(set(texts)) == 1


def test_dockerignore_sends_what_the_dockerfiles_copy_and_nothing_private():
    patterns = dockerignore_patterns()
    for package in DOCKERFILES:
        for source in copied_sources(instructions_of(package)):
            inside = f"{source.rstrip('/')}/x.py" if (REPO_ROOT / source).is_dir() else source
            assert dockerignore_allows(inside, patterns), source
    for private in (".env", ".venv/bin/python", ".data/postgres/PG_VERSION", ".git/HEAD"):
        assert not dockerignore_allows(private, patterns), private
    for noise in ("tests/conftest.py", "common/__pycache__/x.pyc", ".pytest_cache/v"):
        assert not dockerignore_allows(noise, patterns), noise


def _imported_top_level(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==", line)
        if match:
            names.add(re.sub(r"[-_.]+", "-", match.group(1)).lower())
    return names


@pytest.mark.parametrize("package", sorted(DOCKERFILES))
def test_the_image_holds_everything_the_service_imports(package):
    """Only common/ and the service are copied; everything else must come from requirements."""
    copied = {Path(source).parts[0] for source in copied_sources(instructions_of(package))}
    runtime = _requirement_names(REPO_ROOT / "requirements.txt")
    distributions = importlib.metadata.packages_distributions()
    for directory in (SHARED_PACKAGE, package):
        for path in (REPO_ROOT / directory).rglob("*.py"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if relative in DEV_ONLY_MODULES:
                continue
            for name in _imported_top_level(path):
                if name in sys.stdlib_module_names or name in copied:
                    continue
                dists = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(name, [])}
                assert dists & runtime, f"{relative} imports {name}, which the image lacks"


@pytest.mark.parametrize("package", sorted(DOCKERFILES))
def test_installing_the_copied_files_packages_every_source_file(package, tmp_path: Path):
    """The image runs the installed package: migrations and generated code must be in it."""
    build = tmp_path / "src"
    build.mkdir()
    for source in copied_sources(instructions_of(package)):
        target = build / source
        origin = REPO_ROOT / source
        if origin.is_dir():
            shutil.copytree(origin, target)
        else:
            shutil.copy(origin, target)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(tmp_path / "wheels"), str(build)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    for directory in (SHARED_PACKAGE, package):
        for path in (REPO_ROOT / directory).rglob("*"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if path.is_dir() or "__pycache__" in relative or path.name == "Dockerfile":
                continue
            assert relative in packaged, f"{relative} would be missing from the image"
