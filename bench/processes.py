"""Resident memory of every process of a running stack, named by role."""

import psutil

MB = 1024 * 1024


def _role(process: psutil.Process, package: str) -> str:
    command = " ".join(process.cmdline())
    if "gunicorn" in command:
        parent = process.parent()
        is_worker = parent is not None and "gunicorn" in " ".join(parent.cmdline())
        return "web worker" if is_worker else "gunicorn master"
    if f"-m {package} " in command and not command.endswith(f"-m {package}"):
        return "grpc + worker" if "grpc" in command else command.split(f"-m {package} ")[1]
    return "launcher"


def service_rss(service_pids: dict[str, int]) -> list[tuple[str, str, int, float]]:
    """Return (service, role, pid, RSS in MB) for each service's launcher and all its children."""
    rows = []
    for package, pid in service_pids.items():
        try:
            launcher = psutil.Process(pid)
            processes = [launcher, *launcher.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                rows.append(
                    (package, _role(process, package), process.pid, process.memory_info().rss / MB)
                )
            except psutil.NoSuchProcess:
                continue
    return sorted(rows, key=lambda row: (row[0], row[1], row[2]))
