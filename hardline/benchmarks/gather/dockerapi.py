"""Docker Engine API client that the gather script runs ON THE HOST (``python3 -I -S -c``) when
python3 is there: one process asks the daemon for everything round 1 wants, where the docker CLI
would take eight (docker info, network inspect, ps, inspect, image ls, image inspect, network ls,
network inspect), each a Go program of its own that also pings the daemon first.

It prints the same sections, with the same content, as the CLI lines of
:mod:`hardline.benchmarks.gather.docker` (tests/test_gather_engine.py compares both on a real
dockerd): ``info`` (GET /info), ``bridge`` (the bridge network's inspect document),
``containers`` (State.Pid and the inspect document of every container, newest first, as ``docker
ps -a``), ``container_procs`` (what the containers' processes run with, read from /proc as the
CLI lines' grep does), ``images`` (every image's inspect document, sorted by id, as ``docker
image ls -q | sort -u``), ``overlay_networks`` (every overlay network's inspect document, in
``docker network ls`` order). An object removed between the listing and its inspection is left
out, as the CLI lines allow. Documents are the daemon's own bytes, passed through.

Arguments: SOCKET SECONDS FACT...; SECONDS (empty: no limit) bounds the whole client: when the
daemon does not answer in time, that section and every later one say exit code 124 (timed out),
so that a hung daemon costs one hardline_command_timeout, not one per request.

What it costs the host matters more than style here: it imports only modules built into the
interpreter (no json, re or os package: ~10 ms of start-up less), and keeps to the syntax and
standard library of Python 3.4, since this file is sent as it is.
"""

import sys

MARK = "@@HL"
TIMED_OUT = 124


class Failure(Exception):
    def __init__(self, code, message):
        Exception.__init__(self, message)
        self.code = code


class _Decoding:
    """What the C scanner of the json package reads from its decoder."""
    strict = True
    object_hook = object_pairs_hook = None
    parse_float, parse_int = float, int

    @staticmethod
    def parse_constant(name):
        return {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}[name]


def _loads_function():
    try:
        import _json

        scan = _json.make_scanner(_Decoding())  # type: ignore[arg-type]  # duck-typed: the attributes it reads

        def loads(data):
            text = data.decode("utf-8", "replace").strip()
            try:
                value, end = scan(text, 0)
            except StopIteration:
                raise ValueError("not JSON: %r" % text[:100]) from None
            if text[end:].strip():
                raise ValueError("not JSON: %r" % text[:100])
            return value

        loads(b'{"a": [1, 2.5, null, true]}')
        return loads
    except Exception:  # another interpreter, or a scanner that wants more: the json package
        import json

        return lambda data: json.loads(data.decode("utf-8", "replace"))


loads = _loads_function()


class Client:
    def __init__(self, path, seconds):
        import time

        self.path, self.clock = path, time.monotonic
        self.seconds = seconds
        self.deadline = self.clock() + seconds if seconds else None

    def get(self, url, missing_ok=False):
        """The body of a 200 answer; None for a 404 when missing_ok; Failure otherwise."""
        import _socket

        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        chunks = []
        try:
            self._limit(sock)
            sock.connect(self.path)
            sock.sendall(("GET " + url + " HTTP/1.0\r\nHost: docker\r\n\r\n").encode("ascii"))
            while True:
                self._limit(sock)
                chunk = sock.recv(262144)
                if not chunk:
                    break
                chunks.append(chunk)
        except _socket.timeout as err:
            raise Failure(TIMED_OUT, "the Docker daemon did not answer %s within %s s (hardline_command_timeout)"
                          % (url, self.seconds)) from err
        except OSError as err:
            raise Failure(1, "Cannot connect to the Docker daemon at unix://%s: %s" % (self.path, err)) from err
        finally:
            sock.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        try:
            status = int(head.split(b" ", 2)[1])
        except (IndexError, ValueError) as err:
            raise Failure(1, "unexpected answer from the Docker daemon to %s: %r" % (url, head[:200])) from err
        if status == 404 and missing_ok:
            return None
        if status != 200:
            raise Failure(1, "Error response from daemon: %s" % _message(body))
        return body.strip()

    def _limit(self, sock):
        if self.deadline is not None:
            left = self.deadline - self.clock()
            if left <= 0:
                import _socket

                raise _socket.timeout()
            sock.settimeout(left)


def _message(body):
    try:
        return loads(body)["message"]
    except Exception:
        return body.decode("utf-8", "replace")[:300]


def _natural(name):
    """docker network ls order: names compared with their digit runs as numbers."""
    key, run = [], ""
    for char in name + "\0":
        if run and (char.isdigit() != run[-1].isdigit() or char == "\0"):
            key.append((0, int(run), "") if run.isdigit() else (1, 0, run))
            run = ""
        run += char
    return key


def info(client, state):
    return client.get("/info")


def bridge(client, state):
    return client.get("/networks/bridge")


def containers(client, state):
    lines = []
    for item in loads(client.get("/containers/json?all=1")):
        doc = client.get("/containers/%s/json" % item["Id"], missing_ok=True)
        if doc is not None:
            pid = (loads(doc).get("State") or {}).get("Pid") or 0
            lines.append(str(pid).encode("ascii") + b" " + doc)
            state.setdefault("pids", []).append(pid)
    return b"\n".join(lines)


def _lines(path):
    """Lines of a /proc file; none when it is gone (the process ended) or unreadable, as grep -s."""
    import posix

    try:
        fd = posix.open(path, posix.O_RDONLY)
    except OSError:
        return []
    try:
        data, chunk = b"", posix.read(fd, 65536)
        while chunk:
            data += chunk
            chunk = posix.read(fd, 65536)
    except OSError:
        return []
    finally:
        posix.close(fd)
    return data.splitlines()


STATUS_FIELDS = (b"Uid:", b"CapEff:", b"NoNewPrivs:", b"Seccomp:")
UID_MAP_BYTES = frozenset(b" 0123456789")
NOT_HEX = bytes(b if chr(b) in "0123456789abcdef" else 32 for b in range(256))


def _container_id(line):
    """The last 64 characters of the last run of 64 or more lowercase hex digits in a cgroup line
    (what `grep -E '[0-9a-f]{64}' | sed 's#.*\\([0-9a-f]\\{64\\}\\).*#...#'` picks), or None."""
    if len(line) < 64:
        return None
    runs = [run for run in line.translate(NOT_HEX).split(b" ") if len(run) >= 64]
    return runs[-1][-64:] if runs else None


def container_procs(client, state):
    """What the CLI lines' greps over /proc print: the status fields and uid map of every
    container's init, the first cgroup line naming a container id of every process (pid id), and
    the command names of all of them."""
    import posix

    pids = [p for p in state.get("pids", ()) if p > 0]
    if not pids:
        return b""
    out = []
    for pid in pids:
        for name in ("status", "uid_map"):
            path = ("/proc/%d/%s" % (pid, name)).encode("ascii")
            for line in _lines(path):  # the status fields, or a uid map line: "  0  100000  65536"
                if line.startswith(STATUS_FIELDS) or (not set(line) - UID_MAP_BYTES and len(line.split()) == 3):
                    out.append(path + b":" + line)
    out.append(b"### cgroups")
    members = []
    for entry in sorted(e for e in posix.listdir("/proc") if e.isdigit()):  # as the shell's glob sorts
        for line in _lines("/proc/%s/cgroup" % entry):
            found = _container_id(line)
            if found:
                out.append(entry.encode("ascii") + b" " + found)
                members.append(entry)
                break
    out.append(b"### comms")
    for pid in [str(p) for p in pids] + members:
        path = ("/proc/%s/comm" % pid).encode("ascii")
        out += [path + b":" + line for line in _lines(path)]
    return b"\n".join(out)


def images(client, state):
    ids = sorted(set(item["Id"] for item in loads(client.get("/images/json"))))
    docs = [client.get("/images/%s/json" % i, missing_ok=True) for i in ids]
    return b"\n".join(d for d in docs if d is not None)


def overlay_networks(client, state):
    found = loads(client.get("/networks?filters=%7B%22driver%22%3A%7B%22overlay%22%3Atrue%7D%7D"))
    found.sort(key=lambda n: _natural(n.get("Name") or ""))
    docs = [client.get("/networks/%s" % n["Id"], missing_ok=True) for n in found]
    return b"\n".join(d for d in docs if d is not None)


SECTIONS = {"info": info, "bridge": bridge, "containers": containers, "container_procs": container_procs,
            "images": images, "overlay_networks": overlay_networks}


def main(argv):
    path, seconds, wanted = argv[1], argv[2], argv[3:]
    client = Client(path, float(seconds) if seconds else None)
    out = sys.stdout.buffer
    hung, state = None, {}  # type: Failure | None, dict[str, list[int]]  # a comment: Python 3.4 syntax
    for name in wanted:
        code, text, err = 0, b"", ""
        if hung is not None:
            code, err = hung.code, str(hung)
        else:
            try:
                text = SECTIONS[name](client, state)
            except Failure as failure:
                code, err = failure.code, str(failure)
                if code == TIMED_OUT:
                    hung = failure
            except ValueError as failure:  # an answer that is not JSON
                code, err = 1, str(failure)
        out.write(("%s %s\n" % (MARK, name)).encode("utf-8") + text
                  + ("\n%s-RC %d\n%s\n" % (MARK, code, err)).encode("utf-8", "replace"))
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
