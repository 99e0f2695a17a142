"""TCP forwarder from host loopback into a node's network namespace (run as its own process).

    python3 forward.py /run/netns/<name> 10.247.0.2:22 10.247.0.2:6443

prints one line ``<port> <port>``: for each target a port on 127.0.0.1 in the *host* namespace
that forwards connections to the target inside the node's namespace.

Why: the team's network rule keeps private-range addresses out of the host's own namespace, so
the host has no route to a node; the test process, sshd clients (pyinfra, paramiko, OpenSSH)
and kubectl reach a node only through loopback. The listening sockets are bound *before* this
process joins the node's namespace (a socket stays in the namespace it was created in); every
outgoing connection is created after, so it starts inside the node. One process, one thread per
direction of each connection; it exits when its parent (the test process) dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1


def pump(src: socket.socket, dst: socket.socket) -> None:
    """Copy bytes one way until EOF or error, then half-close the other side."""
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def connection(client: socket.socket, target: tuple[str, int]) -> None:
    """Relay one connection both ways; close both sockets once both directions ended."""
    try:
        upstream = socket.create_connection(target, timeout=10)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    back = threading.Thread(target=pump, args=(upstream, client), daemon=True)
    back.start()
    pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def serve(listener: socket.socket, target: tuple[str, int]) -> None:
    """Accept forever; each connection gets a fresh socket to the target inside the node."""
    while True:
        client, _ = listener.accept()
        threading.Thread(target=connection, args=(client, target), daemon=True).start()


def main(argv: list[str]) -> int:
    netns, targets = argv[0], []
    for spec in argv[1:]:
        host, _, port = spec.rpartition(":")
        targets.append((host, int(port)))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    listeners = []
    for _ in targets:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        listeners.append(sock)
    fd = os.open(netns, os.O_RDONLY)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        print(f"setns {netns}: {os.strerror(ctypes.get_errno())}", file=sys.stderr, flush=True)
        return 1
    os.close(fd)
    print(" ".join(str(s.getsockname()[1]) for s in listeners), flush=True)
    threads = [threading.Thread(target=serve, args=(s, t), daemon=True) for s, t in zip(listeners, targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
