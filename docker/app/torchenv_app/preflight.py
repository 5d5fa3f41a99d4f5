"""`verify --distributed`: what a job across nodes needs of this node, checked before
torchrun starts: /dev/shm, the master's name, this host's own name, the interfaces gloo and
NCCL will pick, and the rendezvous port. Run it on every node at once (`srun verify
--distributed`, or as each pod's first command): node 0 listens on the rendezvous port and
the others reach it. Each fault is one line that says what to change."""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from collections.abc import Mapping

from torchenv_app import support
from torchenv_app.checks import FAIL, OK, SKIP, WARN, Check
from torchenv_app.cluster import LaunchPlan

HELLO = b"torchenv-preflight\n"
ANSWER = b"ok\n"
SIOCGIFADDR = 0x8915


def run(plan: LaunchPlan, wait: float, shm_need: int | None, env: Mapping[str, str]) -> list[Check]:
    deadline = time.monotonic() + wait
    results = [check_shm(plan, shm_need, support.shm_bytes())]
    if plan.nnodes == 1:
        results.append(Check("rendezvous", SKIP, "one node: nothing to reach"))
        return results
    resolved, master_ip = resolve_master(plan, deadline, wait)
    results.append(resolved)
    known = interfaces()
    route = route_interface(master_ip, known) if master_ip else None
    results.append(check_host_name(socket.gethostname(), own_addresses(), env, outward(route, known)))
    results.append(check_interfaces(plan, master_ip, route, known, env))
    if master_ip is None:
        results.append(Check("rendezvous", SKIP, f"{plan.master_host} does not resolve (above)"))
    elif plan.node_rank == 0:
        results.append(serve_rendezvous(plan, deadline))
    else:
        results.append(reach_rendezvous(plan, master_ip, deadline))
    return results


def check_shm(plan: LaunchPlan, need: int | None, size: int | None) -> Check:
    """NEED, or a GB per process on this node: DataLoader workers and NCCL between the GPUs
    of one node both go through /dev/shm."""
    need = need or plan.nproc * support.SHM_PER_PROCESS
    advice = f"run the container with --shm-size {max(1, -(-need // 2**30))}g (Kubernetes: an emptyDir with medium: Memory at /dev/shm)"
    if size is None:
        return Check("shm", FAIL, f"no /dev/shm, and this job needs {support.shown_bytes(need)}: {advice}")
    if size < need:
        return Check("shm", FAIL, f"/dev/shm is {support.shown_bytes(size)}, this job needs {support.shown_bytes(need)}: {advice}")
    return Check("shm", OK, f"/dev/shm is {support.shown_bytes(size)} (needs {support.shown_bytes(need)})")


def resolution_advice(engine: str) -> str:
    if engine in ("indexed-job", "pytorchjob", "trainjob"):
        return "the headless Service needs publishNotReadyAddresses: true and the pod template its name as subdomain"
    if engine == "slurm":
        return "the names in SLURM_STEP_NODELIST must resolve on every node (DNS or /etc/hosts)"
    return "--master (or TORCHENV_MASTER) must name node 0 as the other nodes reach it"


def resolve_master(plan: LaunchPlan, deadline: float, wait: float) -> tuple[Check, str | None]:
    """The master's IPv4 address, retried until DEADLINE: a Service's record can appear
    after the pod starts."""
    host, error = plan.master_host, ""
    while True:
        try:
            address = socket.getaddrinfo(host, plan.master_port, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
            return Check("master name", OK, f"{host} is {address}"), str(address)
        except OSError as failure:
            error = failure.strerror or str(failure)
        if time.monotonic() >= deadline:
            return Check("master name", FAIL, f"{host} did not resolve within {wait:g} s ({error}): {resolution_advice(plan.engine)}"), None
        time.sleep(1)


def own_addresses() -> list[str]:
    """This host's name resolved, in the resolver's order (gloo takes the first it can bind)."""
    try:
        return list(dict.fromkeys(str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)))
    except OSError:
        return []


def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def outward(route: str | None, known: Mapping[str, str]) -> str | None:
    """The interface to pin gloo and NCCL to: the route to the master unless that is
    loopback, else the first interface that is neither loopback nor Docker's bridge."""
    if route and route != "lo":
        return route
    return next((name for name in sorted(known) if name != "lo" and not name.startswith("docker")), None)


def check_host_name(name: str, addresses: list[str], env: Mapping[str, str], route: str | None) -> Check:
    """gloo binds to, and tells the other nodes, the first address this host's own name
    resolves to; Debian's /etc/hosts maps it to 127.0.1.1, which no other node can reach."""
    pin = f"GLOO_SOCKET_IFNAME={route or 'eth0'}"
    if env.get("GLOO_SOCKET_IFNAME"):
        return Check("host name", OK, f"{name}: gloo uses GLOO_SOCKET_IFNAME={env['GLOO_SOCKET_IFNAME']}")
    if not addresses:
        return Check("host name", FAIL, f"this host's name {name} does not resolve, so gloo falls back to loopback: set {pin}")
    if is_loopback(addresses[0]):
        return Check(
            "host name",
            FAIL,
            f"this host's name {name} resolves to {addresses[0]} first (/etc/hosts): gloo would give the other nodes that address; "
            f"set {pin} (and NCCL_SOCKET_IFNAME), or map the name to this node's own address",
        )
    return Check("host name", OK, f"{name} is {', '.join(addresses)}")


def interfaces() -> dict[str, str]:
    """Each interface with an IPv4 address, and that address."""
    import fcntl
    import struct

    found = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            found[name] = socket.inet_ntoa(packed[20:24])
    return found


def route_interface(address: str, known: Mapping[str, str]) -> str | None:
    """The interface this node reaches ADDRESS through (the kernel's choice of source)."""
    if is_loopback(address):
        return "lo"
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((address, 9))  # UDP: nothing is sent
            source = probe.getsockname()[0]
    except OSError:
        return None
    return next((name for name, own in known.items() if own == source), None)


def nccl_matches(spec: str, names: list[str]) -> list[str]:
    """NCCL_SOCKET_IFNAME's reading: prefixes, "=" for exact names, "^" to exclude."""
    exclude = spec.startswith("^")
    spec = spec.removeprefix("^")
    exact = spec.startswith("=")
    items = [item for item in spec.removeprefix("=").split(",") if item]

    def hit(name: str) -> bool:
        return any(name == item if exact else name.startswith(item) for item in items)

    return [name for name in names if hit(name) != exclude]


def check_interfaces(plan: LaunchPlan, master_ip: str | None, route: str | None, known: Mapping[str, str], env: Mapping[str, str]) -> Check:
    names = sorted(known)
    shown = ", ".join(f"{name} {address}" for name, address in sorted(known.items()))
    gloo = env.get("GLOO_SOCKET_IFNAME", "")
    if missing := [item for item in gloo.split(",") if item and item not in known]:
        return Check("interfaces", FAIL, f"GLOO_SOCKET_IFNAME names {', '.join(missing)}, which this node lacks (it has {shown})")
    nccl = env.get("NCCL_SOCKET_IFNAME", "")
    if nccl and not nccl_matches(nccl, names):
        return Check("interfaces", FAIL, f"NCCL_SOCKET_IFNAME={nccl} matches none of this node's interfaces ({shown})")
    if master_ip and is_loopback(master_ip):
        return Check(
            "interfaces",
            FAIL,
            f"the master {plan.master_host} is {master_ip}, a loopback address the other nodes cannot reach: name node 0 as they see it",
        )
    if master_ip is None:
        return Check("interfaces", SKIP, f"the master's name does not resolve (above); this node has {shown}")
    if route is None:
        return Check("interfaces", FAIL, f"no route to the master {master_ip} from this node's interfaces ({shown})")
    pin = f"GLOO_SOCKET_IFNAME={route} NCCL_SOCKET_IFNAME={route}"
    if route.startswith("docker") and not nccl:
        return Check("interfaces", WARN, f"the master is reached through {route}, which NCCL skips unless told: set {pin}")
    if gloo and route not in gloo.split(","):
        return Check("interfaces", WARN, f"GLOO_SOCKET_IFNAME={gloo}, but the master is reached through {route}: set {pin}")
    others = [name for name in names if name != "lo" and not name.startswith("docker")]
    if len(others) > 1 and not (gloo and nccl):
        return Check("interfaces", WARN, f"several interfaces ({shown}) and the master is reached through {route}: set {pin}")
    return Check("interfaces", OK, f"the master is reached through {route} ({known.get(route, '?')})")


def serve_rendezvous(plan: LaunchPlan, deadline: float) -> Check:
    """Node 0: the port must be free, and every other node must reach it."""
    port, others = plan.master_port, plan.nnodes - 1
    try:
        listener = socket.create_server(("", port), reuse_port=False)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            return Check("rendezvous", FAIL, f"port {port} is in use on node 0 (another job?): give --master another port")
        return Check("rendezvous", FAIL, f"cannot listen on port {port}: {error.strerror}")
    peers: list[str] = []
    with listener:
        while len(peers) < others and (left := deadline - time.monotonic()) > 0:
            listener.settimeout(left)
            try:
                connection, (address, _) = listener.accept()
            except TimeoutError:
                break
            with connection:
                connection.settimeout(5)
                try:
                    if connection.recv(len(HELLO)) == HELLO:
                        connection.sendall(ANSWER)
                        peers.append(address)
                except OSError:
                    continue
    if len(peers) < others:
        return Check(
            "rendezvous",
            FAIL,
            f"{len(peers)} of the {others} other node(s) reached port {port} in time: run verify --distributed on every node at once "
            "(srun verify --distributed), and let the port through between them",
        )
    return Check("rendezvous", OK, f"port {port}: the {others} other node(s) reached it (from {', '.join(peers)})")


def reach_rendezvous(plan: LaunchPlan, master_ip: str, deadline: float) -> Check:
    """Every node but 0: connect to the master's port until DEADLINE."""
    error = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((master_ip, plan.master_port), timeout=3) as connection:
                connection.settimeout(5)
                connection.sendall(HELLO)
                answer = connection.recv(len(ANSWER))
            if answer == ANSWER:
                return Check("rendezvous", OK, f"reached node 0 at {plan.master}")
            return Check("rendezvous", OK, f"{plan.master} answers (not verify: is the job's rendezvous running already?)")
        except OSError as failure:
            error = failure.strerror or type(failure).__name__
        time.sleep(1)
    return Check(
        "rendezvous",
        FAIL,
        f"{plan.master} did not answer in time ({error or 'timed out'}): start verify --distributed on node 0 too, "
        "and let the port through between the nodes",
    )


def parse_size(text: str) -> int:
    """ "8g", "512m", "1073741824" -> bytes."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    text = text.strip().lower().removesuffix("b")
    factor = units.get(text[-1:], 1)
    number = text[:-1] if text[-1:] in units else text
    return int(float(number) * factor)
