"""Every server segen starts binds 127.0.0.1 unless told otherwise: the local Prefect server
(`segen schedule` and runs without PREFECT_API_URL start it) listens on loopback only,
read from the kernel's socket table (psutil), not from the command line."""
from __future__ import annotations

from pathlib import Path

import psutil
from conftest import init_project

from segen.pipeline import prefect_server as local_server
from segen.project import Project


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every socket the process or its children listen on."""
    found = []
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        try:
            found += [(c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
        except psutil.NoSuchProcess:
            continue
    return found


def test_the_local_prefect_server_listens_on_loopback_only(tmp_path: Path) -> None:
    project = Project.at(init_project(tmp_path / "proj"))
    record, started = local_server.ensure_server(project)
    try:
        assert started and local_server.is_healthy(record.api_url)
        sockets = _listening(record.pid)
        port = int(record.api_url.rsplit(":", 1)[1].split("/")[0])
        assert ("127.0.0.1", port) in sockets, sockets
        assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    finally:
        local_server.stop_process_group(record.pid)
