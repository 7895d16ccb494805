"""The services' one Dockerfile checked without an engine: hadolint, and the rules we build by.

Every service runs the same image (``common/Dockerfile``), which holds every
service's package; docker-compose.yml (and the Kubernetes manifests) pick the
package and its roles by the command. So adding a service adds a COPY line
and a compose block, never a Dockerfile. The image also runs the local mail
catcher (a module of devstack, copied alone), compose's mail server.
"""

import ast
import importlib.metadata
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from common.observability import MULTIPROC_DIR_VARIABLE
from tests.containers.deployment import (
    MIGRATE_ROLE,
    REPO_ROOT,
    SERVICES_DOCKERFILE,
    SHARED_PACKAGE,
    Instruction,
    app_services,
    dockerfile_instructions,
    dockerignore_allows,
    dockerignore_patterns,
    image_services,
    image_tools,
    load_compose,
    module_path,
    only,
    service_environment,
)

COMPOSE = load_compose()
RUNNERS = image_services(COMPOSE)
PACKAGES = sorted({package for package, _ in RUNNERS.values()})
# Other modules compose runs from the image (the mail catcher), and their source files.
TOOLS = image_tools(COMPOSE)
TOOL_MODULES = sorted({module_path(module) for module, _ in TOOLS.values()})
DOCKERFILE = REPO_ROOT / SERVICES_DOCKERFILE
# The launcher's roles (common/process/launcher.py): a serving container runs some of them.
ROLES = {"web", "grpc", "worker"}
# The only other image this repository builds: the OpenSky simulator, for the test stack.
SIMULATOR_DOCKERFILE = "opensky_sim/Dockerfile"
# Development-only modules inside a copied package: never imported when a service runs.
DEV_ONLY_MODULES: dict[str, str] = {}
SECRET_WORDS = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE", re.IGNORECASE)


def instructions() -> list[Instruction]:
    return dockerfile_instructions(DOCKERFILE)


def copied_sources(instructions: list[Instruction]) -> list[str]:
    """Return the build-context paths every COPY instruction takes (destination dropped)."""
    sources = []
    for instruction in instructions:
        if instruction.keyword == "COPY" and not instruction.args.startswith("--from"):
            sources.extend(instruction.args.split()[:-1])
    return sources


def test_the_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_runs_one_image_built_from_one_dockerfile():
    """One recipe, one build, one image name: no service carries a Dockerfile of its own."""
    assert set(app_services(COMPOSE).values()) == set(PACKAGES), "each package serves"
    specs = [COMPOSE["services"][name] for name in [*RUNNERS, *TOOLS]]
    assert {spec["build"]["context"] for spec in specs} == {"."}, "the image needs common/"
    images = {spec.get("image") for spec in specs}
    assert len(images) == 1 and None not in images, f"one image name for all: {images}"
    built_here = sorted(
        path.relative_to(REPO_ROOT).as_posix() for path in REPO_ROOT.glob("*/Dockerfile")
    )
    assert built_here == sorted([SERVICES_DOCKERFILE, SIMULATOR_DOCKERFILE])


def test_base_image_is_slim_python_pinned_to_the_locked_version():
    image = only(instructions(), "FROM").args
    match = re.fullmatch(r"python:(\d+)\.(\d+)\.(\d+)-slim(-[a-z]+)?", image)
    assert match, f"pin an official slim Python image by full version, not {image}"
    # requirements.txt is compiled for this Python (make lock's --python-version).
    locked = re.search(r"--python-version (\d+)\.(\d+)", (REPO_ROOT / "Makefile").read_text())
    assert match.group(1, 2) == locked.group(1, 2)


def test_runs_as_a_non_root_user():
    steps = instructions()
    user = only(steps, "USER")
    assert user.args.split(":")[0] not in {"root", "0"}
    # Nothing after it runs as root again (no RUN), so the last layers are the user's.
    assert not [i for i in steps[steps.index(user) :] if i.keyword == "RUN"]


def test_the_command_is_the_services_not_the_images():
    """The image names no service: compose gives each container its command and health check."""
    steps = instructions()
    for keyword in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
        assert not [i for i in steps if i.keyword == keyword], f"{keyword} would name a service"
    assert only(steps, "STOPSIGNAL").args == "SIGTERM"
    for name, (package, arguments) in RUNNERS.items():
        spec = COMPOSE["services"][name]
        if arguments == [MIGRATE_ROLE]:
            assert "healthcheck" not in spec, f"{name}: a one-shot step has nothing to probe"
            continue
        assert arguments and set(arguments) <= ROLES, f"{name}: roles {arguments}"
        # Every role the container runs: its servers answer and its worker makes progress.
        probed = [role for role in ("web", "grpc", "worker") if role in arguments]
        assert spec["healthcheck"]["test"] == [
            *["CMD", "python", "-m", package, "healthcheck"],
            *probed,
        ], name
        # The probe reads the worker's heartbeats where the service writes them.
        assert service_environment(spec)[MULTIPROC_DIR_VARIABLE].startswith("/tmp/"), name
    for name in TOOLS:
        # Its own check, in the image's Python (slim images have no curl).
        assert COMPOSE["services"][name]["healthcheck"]["test"][:2] == ["CMD", "python"], name


def test_no_secret_is_baked_into_the_image():
    for instruction in instructions():
        if instruction.keyword in {"ENV", "ARG", "LABEL"}:
            assert not SECRET_WORDS.search(instruction.args), instruction
    assert not dockerignore_allows(".env", dockerignore_patterns())


def test_dependencies_are_installed_in_a_layer_before_the_source():
    steps = [(i.keyword, i.args) for i in instructions()]
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


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_compose_runs_is_copied_into_the_image(package):
    copied = {source.rstrip("/") for source in copied_sources(instructions())}
    assert package in copied, f"add `COPY {package}/ /src/{package}/` to {SERVICES_DOCKERFILE}"
    assert dockerignore_allows(f"{package}/__main__.py", dockerignore_patterns()), (
        f"add !{package}/ to .dockerignore"
    )


@pytest.mark.parametrize("module", TOOL_MODULES)
def test_every_module_compose_runs_from_the_image_is_copied_alone_with_its_package(module):
    """The mail catcher's file and its package's __init__, never the rest of the local stack."""
    copied = {source.rstrip("/") for source in copied_sources(instructions())}
    package = Path(module).parent.as_posix()
    assert {module, f"{package}/__init__.py"} <= copied, f"copy {module} into the image"
    patterns = dockerignore_patterns()
    assert dockerignore_allows(module, patterns), f"add !{module} to .dockerignore"
    assert package not in copied, f"only {module} of {package}/: the rest is for development"
    for other in (REPO_ROOT / package).glob("*.py"):
        relative = other.relative_to(REPO_ROOT).as_posix()
        if relative not in copied:
            assert not dockerignore_allows(relative, patterns), relative


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_private():
    patterns = dockerignore_patterns()
    for source in copied_sources(instructions()):
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


@pytest.mark.parametrize("package", PACKAGES + TOOL_MODULES)
def test_the_image_holds_everything_the_service_imports(package):
    """Only common/ and the services are copied; everything else must come from requirements."""
    copied = {Path(source).parts[0] for source in copied_sources(instructions())}
    runtime = _requirement_names(REPO_ROOT / "requirements.txt")
    distributions = importlib.metadata.packages_distributions()
    for directory in (SHARED_PACKAGE, package):
        paths = [REPO_ROOT / directory] if directory.endswith(".py") else []
        for path in paths or (REPO_ROOT / directory).rglob("*.py"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if relative in DEV_ONLY_MODULES:
                continue
            for name in _imported_top_level(path):
                if name in sys.stdlib_module_names or name in copied:
                    continue
                dists = {re.sub(r"[-_.]+", "-", d).lower() for d in distributions.get(name, [])}
                assert dists & runtime, f"{relative} imports {name}, which the image lacks"


def test_installing_the_copied_files_packages_every_source_file(tmp_path: Path):
    """The image runs the installed packages: migrations and generated code must be in them."""
    build = tmp_path / "src"
    build.mkdir()
    for instruction in instructions():
        if instruction.keyword != "COPY" or instruction.args.startswith("--from"):
            continue
        *sources, destination = instruction.args.split()
        # As COPY does: a directory's contents, or each file by its name, into the destination.
        target = build / destination.removeprefix("/src").strip("/")
        for source in sources:
            origin = REPO_ROOT / source
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, target / origin.name)
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"]
    subprocess.run(
        [*pip_wheel, "--no-build-isolation", "--wheel-dir", str(tmp_path / "wheels"), str(build)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    for module in TOOL_MODULES:
        assert module in packaged, f"{module} would be missing from the image"
    for directory in (SHARED_PACKAGE, *PACKAGES):
        for path in (REPO_ROOT / directory).rglob("*"):
            relative = path.relative_to(REPO_ROOT).as_posix()
            if path.is_dir() or "__pycache__" in relative or path.name == "Dockerfile":
                continue
            assert relative in packaged, f"{relative} would be missing from the image"
