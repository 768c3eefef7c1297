"""What a SLURM cluster offers, as its own commands report it (scontrol, sacctmgr).

Read once by the pre-flight check (overlearning/workflow/preflight.py): each partition's
state, time limit and nodes, each node's CPUs, memory, GPUs and features, and whether an
account may submit. Only the SLURM client commands are needed (the login node has them).
"""

from __future__ import annotations

import getpass
import re
import subprocess
from dataclasses import dataclass, field

# Node features some sites use to publish the NVIDIA driver (e.g. `nvidia-driver-580`,
# `driver_570.86`); SLURM itself does not report it.
DRIVER_FEATURE = re.compile(r"(?:nvidia|driver)\D{0,8}?(\d{3})(?:\.\d+)*", re.I)


@dataclass
class Node:
    name: str
    cpus: int
    memory_mb: int
    gpus: int
    features: list[str] = field(default_factory=list)

    @property
    def driver(self) -> int | None:
        """The NVIDIA driver's major version, where a node feature states it."""
        for feature in self.features:
            found = DRIVER_FEATURE.search(feature)
            if found:
                return int(found.group(1))
        return None


@dataclass
class Partition:
    name: str
    up: bool
    default: bool
    max_minutes: int | None       # None: no limit
    nodes: list[Node]
    max_mem_per_node_mb: int | None = None
    max_cpus_per_node: int | None = None

    @property
    def cpus(self) -> int:
        limit = max((n.cpus for n in self.nodes), default=0)
        return min(limit, self.max_cpus_per_node) if self.max_cpus_per_node else limit

    @property
    def memory_mb(self) -> int:
        limit = max((n.memory_mb for n in self.nodes), default=0)
        return min(limit, self.max_mem_per_node_mb) if self.max_mem_per_node_mb else limit

    @property
    def gpus(self) -> int:
        return max((n.gpus for n in self.nodes), default=0)


def _fields(line: str) -> dict[str, str]:
    """`Key=Value Key2=Value with spaces` of a one-line scontrol record (-o)."""
    pairs = re.findall(r"(\w+)=(.*?)(?=\s+\w+=|$)", line.strip())
    return dict(pairs)


def slurm_minutes(text: str) -> int | None:
    """SLURM time (`UNLIMITED`, `30`, `1:00:00`, `2-00:00:00`) in whole minutes."""
    text = text.strip()
    if text in ("UNLIMITED", "INFINITE", "NONE", ""):
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 1:
        hours, minutes, seconds = 0, parts[0], 0
    elif len(parts) == 2:
        hours, minutes, seconds = 0, parts[0], parts[1]
    else:
        hours, minutes, seconds = parts
    total = (int(days) if days else 0) * 1440 + hours * 60 + minutes + (seconds > 0)
    return total


def gres_gpus(gres: str) -> int:
    """GPUs in a node's Gres (`gpu:4`, `gpu:a100:4(S:0-1)`, `(null)`)."""
    count = 0
    for item in gres.split(","):
        parts = re.sub(r"\(.*?\)", "", item).split(":")
        if parts[0] == "gpu" and len(parts) >= 2 and parts[-1].isdigit():
            count += int(parts[-1])
    return count


def _limit(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def parse_nodes(text: str) -> dict[str, Node]:
    nodes = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        f = _fields(line)
        features = (f.get("AvailableFeatures", "") + "," + f.get("ActiveFeatures", "")).split(",")
        nodes[f["NodeName"]] = Node(f["NodeName"], int(f.get("CPUTot", "0")),
                                    int(f.get("RealMemory", "0")), gres_gpus(f.get("Gres", "")),
                                    sorted({x for x in features if x and x != "(null)"}))
    return nodes


def parse_partitions(text: str, nodes: dict[str, Node],
                     members: dict[str, list[str]]) -> dict[str, Partition]:
    partitions = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        f = _fields(line)
        name = f["PartitionName"]
        partitions[name] = Partition(
            name, up=f.get("State") == "UP", default=f.get("Default") == "YES",
            max_minutes=slurm_minutes(f.get("MaxTime", "UNLIMITED")),
            nodes=[nodes[n] for n in members.get(name, []) if n in nodes],
            max_mem_per_node_mb=_limit(f.get("MaxMemPerNode")),
            max_cpus_per_node=_limit(f.get("MaxCPUsPerNode")))
    return partitions


def _run(command: list[str]) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=True,
                          timeout=120).stdout


def read_cluster() -> dict[str, Partition]:
    """Every partition of the cluster with its nodes (scontrol, sinfo)."""
    nodes = parse_nodes(_run(["scontrol", "show", "node", "-o"]))
    members: dict[str, list[str]] = {}
    for line in _run(["sinfo", "-h", "-N", "-o", "%P %N"]).splitlines():
        partition, node = line.split()
        members.setdefault(partition.rstrip("*"), []).append(node)
    return parse_partitions(_run(["scontrol", "show", "partition", "-o"]), nodes, members)


def account_valid(account: str) -> bool | None:
    """Whether this user may submit with ``account`` (sacctmgr); None when SLURM has no
    accounting to ask."""
    try:
        out = _run(["sacctmgr", "-n", "-P", "show", "assoc", f"user={getpass.getuser()}",
                    f"account={account}", "format=Account"])
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return any(line.strip() == account for line in out.splitlines())
