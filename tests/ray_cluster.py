"""A real Ray cluster on this machine for tests and benchmarks: a head node and a second
worker node, each its own `ray start`, with GPUs declared (num_gpus) so that scheduling
by GPU count is real. Every port is picked free and the session lives in its own temp
folder, so clusters of other processes on the same machine are left alone; on exit only
the processes of this cluster are stopped."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ports() -> list[str]:
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
    ]


class LocalRayCluster:
    def __init__(self, head_cpus: int = 2, head_gpus: int = 0, worker_cpus: int = 4, worker_gpus: int = 8):
        self.temp = Path(tempfile.mkdtemp(prefix="gwray", dir="/tmp"))  # short: Ray's socket paths
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        # A loopback-only test cluster: no token authentication (its nodes and drivers share this env).
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        common = ["--node-ip-address=127.0.0.1", "--disable-usage-stats"]
        self._start(
            "--head",
            f"--port={self.port}",
            f"--temp-dir={self.temp}",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
            f"--num-cpus={head_cpus}",
            f"--num-gpus={head_gpus}",
            *common,
        )
        self._start(f"--address={self.address}", f"--num-cpus={worker_cpus}", f"--num-gpus={worker_gpus}", *common)

    def _start(self, *args: str) -> None:
        command = [RAY, "start", *args, *_ports()]
        done = subprocess.run(command, capture_output=True, text=True, env=self.env, timeout=180)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{done.stdout}\n{done.stderr}")

    def connect(self, namespace: str, timeout: float = 90) -> None:
        """Connect this process as a driver, once both nodes have joined."""
        import ray

        ray.init(address=self.address, namespace=namespace, log_to_driver=False)
        deadline = time.time() + timeout
        while sum(1 for node in ray.nodes() if node["Alive"]) < 2:
            if time.time() > deadline:
                raise RuntimeError(f"the Ray cluster at {self.address} did not reach 2 nodes")
            time.sleep(0.3)

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes: those whose command line names its session folder or its port."""
        mine = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info["cmdline"] or [])
            if str(self.temp) in cmd or f"127.0.0.1:{self.port}" in cmd:
                mine.append(proc)
        return mine

    def stop(self) -> None:
        procs = self.processes()
        for proc in procs:
            try:
                proc.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)
