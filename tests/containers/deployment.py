"""Read the deployment files as Docker would, without a Docker engine.

The tests in this package check the Dockerfiles, ``docker-compose.yml``,
``.env``, ``.dockerignore`` and the gateway's nginx configuration against
each other and against the code. This module holds the small parsers they
share: Dockerfile instructions, compose variable substitution
(``${VAR:-default}``, ``${VAR:?message}``, ``$$``), the ``.env`` file, nginx
directives, and every environment variable the services' settings classes read.
"""

import ast
import fnmatch
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from common.service import Service
from common.settings import ServiceSettings
from devstack.stack import SERVICES as STACK_SERVICES

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_FILE = REPO_ROOT / ".env"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
# The code every service's image carries beside the service's own package.
SHARED_PACKAGE = "common"
VARIABLE_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


# --- Dockerfiles ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``args`` as written."""

    keyword: str
    args: str


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Parse a Dockerfile into instructions (comments dropped, continuations joined)."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split())))
        pending = ""
    return instructions


def exec_form(args: str) -> list[str]:
    """Return the argv of an exec-form (JSON array) CMD/HEALTHCHECK; raise if shell form."""
    argv = json.loads(args)
    if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
        raise ValueError(f"not an exec-form command: {args}")
    return argv


def only(instructions: list[Instruction], keyword: str) -> Instruction:
    """Return the single instruction named ``keyword`` (Docker uses the last; we allow one)."""
    found = [i for i in instructions if i.keyword == keyword]
    assert len(found) == 1, f"expected exactly one {keyword}, found {len(found)}"
    return found[0]


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    """Return the argv of the HEALTHCHECK's ``CMD [...]`` (its options skipped)."""
    args = only(instructions, "HEALTHCHECK").args
    _, _, command = args.partition("CMD ")
    return exec_form(command)


def dockerfile_env(instructions: list[Instruction]) -> dict[str, str]:
    """Return the ``ENV KEY=value`` settings of a Dockerfile."""
    env = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for pair in instruction.args.split():
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def dockerignore_allows(path: str, patterns: list[str]) -> bool:
    """Tell whether ``path`` reaches the build context: the last matching pattern decides."""
    allowed = True
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if glob.startswith("**/"):
            matched = any(fnmatch.fnmatch(part, glob[3:]) for part in parts)
        else:
            matched = any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes)
        if matched:
            allowed = negated
    return allowed


def dockerignore_patterns() -> list[str]:
    """Return the patterns of ``.dockerignore`` in order."""
    lines = (line.strip() for line in DOCKERIGNORE.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


# --- docker-compose.yml and .env -----------------------------------------------------------

SUBSTITUTION = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|\$(?P<plain>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Substitute variables as compose does (``${VAR:-default}``, ``${VAR:?error}``, ``$$``)."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if unset_or_empty else value
        if op in (":?", "?"):
            if unset_or_empty:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return value
        if op in (":+", "+"):
            return "" if unset_or_empty else arg
        return value or ""

    return SUBSTITUTION.sub(replace, text)


def _interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [_interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def load_compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    """Return docker-compose.yml as compose sees it with ``env`` (default: the shipped .env)."""
    return _interpolate_tree(
        yaml.safe_load(COMPOSE_FILE.read_text()), read_dotenv() if env is None else env
    )


def compose_variables() -> set[str]:
    """Return the names of every variable the compose file substitutes."""
    return {
        match.group("braced") or match.group("plain")
        for match in SUBSTITUTION.finditer(COMPOSE_FILE.read_text())
        if match.group(0) != "$$"
    }


def service_environment(service: dict[str, Any]) -> dict[str, str]:
    """Return a compose service's ``environment`` as a mapping of strings."""
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


# The services' one image (every service's package; the command picks one).
SERVICES_DOCKERFILE = "common/Dockerfile"
MIGRATE_ROLE = "migrate"


def service_command(spec: dict[str, Any]) -> tuple[str, list[str]] | None:
    """Return ``(package, arguments)`` of a ``python -m <package> ...`` command, else None."""
    command = spec.get("command")
    if isinstance(command, list) and command[:2] == ["python", "-m"] and len(command) > 2:
        return command[2], command[3:]
    return None


def image_runs(compose: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """Map each compose service that runs the services' image to its module and arguments."""
    found = {}
    for name, spec in compose["services"].items():
        build = spec.get("build") or {}
        command = service_command(spec)
        if build.get("dockerfile") == SERVICES_DOCKERFILE and command:
            found[name] = command
    return found


def is_service_package(module: str) -> bool:
    """Tell whether ``module`` is a service (a package declaring one in its ``app.py``)."""
    return "." not in module and (REPO_ROOT / module / "app.py").is_file()


def image_services(compose: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """Map each compose service that runs one of the services to its package and arguments."""
    return {
        name: command
        for name, command in image_runs(compose).items()
        if is_service_package(command[0])
    }


def image_tools(compose: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """Map each other run of the services' image (the mail catcher) to its module and arguments."""
    return {
        name: command
        for name, command in image_runs(compose).items()
        if not is_service_package(command[0])
    }


def module_path(module: str) -> str:
    """Return the source file of a module run with ``python -m`` (``a.b`` -> ``a/b.py``)."""
    return module.replace(".", "/") + ".py"


def app_services(compose: dict[str, Any]) -> dict[str, str]:
    """Map each serving service (the image running roles) to its package."""
    return {
        name: package
        for name, (package, arguments) in image_services(compose).items()
        if arguments != [MIGRATE_ROLE]
    }


def migration_services(compose: dict[str, Any]) -> dict[str, str]:
    """Map each one-shot migration service (``python -m <package> migrate``) to its package."""
    return {
        name: package
        for name, (package, arguments) in image_services(compose).items()
        if arguments == [MIGRATE_ROLE]
    }


@dataclass(frozen=True)
class DotenvEntry:
    """One ``NAME=value`` line of .env, active or commented out, and whether it is explained."""

    name: str
    value: str
    active: bool
    documented: bool


def dotenv_entries() -> list[DotenvEntry]:
    """Parse .env: every variable line, with whether a comment explains it.

    A variable is explained by text after its value (``# NAME=1   what it does``) or
    by a prose comment line above it in the same paragraph (section rulers don't count).
    """
    entries, explained = [], False
    assignment = re.compile(r"^(?P<hash>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<rest>.*)$")
    for raw in ENV_FILE.read_text().splitlines():
        line = raw.strip()
        if not line:
            explained = False
            continue
        match = assignment.match(line)
        if match is None:
            if line.startswith("#") and not line.lstrip("# ").startswith("---"):
                explained = True
            continue
        value, _, note = match.group("rest").partition("  ")
        entries.append(
            DotenvEntry(
                name=match.group("name"),
                value=value.strip(),
                active=match.group("hash") is None,
                documented=explained or bool(note.strip()),
            )
        )
    return entries


def read_dotenv() -> dict[str, str]:
    """Return the active (uncommented) settings of .env, as compose reads them."""
    return {entry.name: entry.value for entry in dotenv_entries() if entry.active}


# --- nginx configuration (the compose gateway) ---------------------------------------------


@dataclass
class Directive:
    """One nginx directive: its name, its arguments (quotes removed) and its block, if any."""

    name: str
    args: list[str]
    block: list["Directive"] | None = None

    def all(self, name: str) -> list["Directive"]:
        """Return the directives called ``name`` directly inside this block."""
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> "Directive":
        """Return the only directive called ``name`` inside this block."""
        found = self.all(name)
        assert len(found) == 1, f"{self.name} {' '.join(self.args)}: {len(found)} {name}"
        return found[0]


# A bare word may hold ${name} (a variable, as nginx reads it, or a setting the image fills in).
NGINX_TOKEN = re.compile(
    r"""'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([{};])|((?:[^\s{};'"$]+|\$\{\w+\}|\$)+)"""
)


def parse_nginx(text: str) -> Directive:
    """Parse nginx configuration text into a tree under a root ``Directive`` named ``main``.

    Enough of nginx's grammar for our files: directives end with ``;``, blocks
    are ``{...}``, ``#`` starts a comment outside quotes, and inside quotes a
    backslash escapes a quote, a backslash, ``n``, ``r`` or ``t`` (any other
    stays, as in regular expressions).
    """
    without_comments = "\n".join(_strip_comment(line) for line in text.splitlines())
    root = Directive("main", [], [])
    stack, words = [root], []
    for match in NGINX_TOKEN.finditer(without_comments):
        single, double, punctuation, bare = match.groups()
        if punctuation == ";":
            stack[-1].block.append(Directive(words[0], words[1:]))
            words = []
        elif punctuation == "{":
            directive = Directive(words[0], words[1:], [])
            stack[-1].block.append(directive)
            stack.append(directive)
            words = []
        elif punctuation == "}":
            assert not words, f"unterminated directive {words}"
            stack.pop()
        else:
            quoted = single if single is not None else double
            words.append(bare if quoted is None else _unescape(quoted))
    assert len(stack) == 1 and not words, "unbalanced braces or a missing ;"
    return root


# The escapes nginx resolves inside quotes; any other backslash stays (regular expressions).
NGINX_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", lambda m: NGINX_ESCAPES.get(m.group(1), m.group(0)), quoted)


def _strip_comment(line: str) -> str:
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote and line[index - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:index]
    return line


# --- Environment variables the code reads -------------------------------------------------


@dataclass(frozen=True)
class EnvRead:
    """One environment variable a service's settings class reads."""

    name: str
    package: str
    location: str
    has_default: bool
    default: Any


def settings_class(package: str) -> type[ServiceSettings]:
    """Return the class holding everything a service reads from its environment."""
    return importlib.import_module(f"{package}.config").Settings


def http_port_variable(package: str) -> str:
    """Return the variable naming a service's REST port (``SLA_HTTP_PORT`` for the detector)."""
    (variable,) = [
        name
        for name, attribute in settings_class(package).variables().items()
        if attribute == "HTTP_PORT"
    ]
    return variable


# Settings a service cannot start without, beside its database URL: a sample value each.
REQUIRED_SAMPLES = {"SMTP_HOST": "smtp.example.com"}


def required_environment(package: str) -> dict[str, str]:
    """The least environment a service's settings accept: its database URL and what it requires."""
    settings = settings_class(package)
    reads = settings.variables()
    return {
        settings.DATABASE_URL_VARIABLE: "postgresql://u:p@db:5432/d",
        **{name: value for name, value in REQUIRED_SAMPLES.items() if name in reads},
    }


def settings_reads(cls: type[ServiceSettings], package: str) -> list[EnvRead]:
    """Every variable ``cls`` reads; a default computed from other settings counts as one."""
    reads = []
    for variable, attribute in cls.variables().items():
        info = cls.model_fields[attribute]
        derived = info.default_factory is not None
        default = None if derived else info.default
        location = f"{cls.__module__}.{cls.__name__}.{attribute}"
        reads.append(EnvRead(variable, package, location, derived or default is not None, default))
    return reads


def service_packages() -> list[str]:
    """Every service's package: compose's, and those the local stack runs that it lacks yet."""
    return sorted(set(app_services(load_compose()).values()) | set(STACK_SERVICES))


def env_reads() -> list[EnvRead]:
    """Find every environment variable the services read (the shared ones once per service)."""
    packages = service_packages()
    return [
        read for package in packages for read in settings_reads(settings_class(package), package)
    ]


def reads_by_service(package: str) -> dict[str, list[EnvRead]]:
    """Variables one service reads, by name."""
    found: dict[str, list[EnvRead]] = {}
    for read in settings_reads(settings_class(package), package):
        found.setdefault(read.name, []).append(read)
    return found


def declaration(package: str) -> Service:
    """Return a service's declaration (``SERVICE`` in its ``app.py``): its roles and peers."""
    return importlib.import_module(f"{package}.app").SERVICE


def speaks_grpc(package: str) -> bool:
    """Tell whether a service serves gRPC or calls a peer's (and so needs the gRPC settings)."""
    service = declaration(package)
    return bool(service.servicer or service.peer)


# What every service reads for its gRPC server and client: a service that has neither reads
# them (they are common settings) but needs none, and gets none (the token least of all).
GRPC_SETTINGS = frozenset(
    variable for variable in ServiceSettings.variables() if variable.startswith("GRPC_")
)


# A host name or address that means "this machine": right for make run, wrong in a container.
LOCAL_HOST = re.compile(r"(?<![\w.-])(localhost|127\.0\.0\.1|::1)(?![\w.-])")


def names_this_machine(default: Any) -> bool:
    """Tell whether a default names this machine as a host (a ``.localhost`` domain does not)."""
    return bool(LOCAL_HOST.search(str(default)))


def string_constants(package: str) -> set[str]:
    """Every string literal in a package that looks like an environment variable name."""
    names = set()
    for path in (REPO_ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
            if is_text and VARIABLE_NAME.match(node.value):
                names.add(node.value)
    return names
