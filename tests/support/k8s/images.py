"""The built binaries, and the container images kubeadm's static pods name, made from them.

The binaries come from ``scripts/build-kubernetes.sh`` (Debian's kubernetes source package,
cached under ~/.cache/hardline/kubernetes/<version>-<recipe>/bin). kubeadm 1.20's manifests
name ``k8s.gcr.io/kube-apiserver:v1.20.2`` and friends, the kubelet's runtime needs
``k8s.gcr.io/pause:3.2``; no registry reachable here serves them. So each image is written here
as an OCI image layout with one layer holding the *same* binary the host runs: the kubelet then
runs the real kube-apiserver, controller manager, scheduler and etcd in real containers (runc via
containerd) with exactly the command of the generated manifests, as on any kubeadm node.

* control-plane images: ``/usr/local/bin/<binary>`` (where upstream's images put it);
* etcd: Debian's ``etcd`` and ``etcdctl`` (dynamically linked, so with their libraries), tagged
  with Debian's version, which the kubeadm configuration asks for (``etcd.local.imageTag``);
* pause: the ``pause`` the build script compiles from the same tree (build/pause/linux/pause.c).

Image tarballs are cached next to the binaries, keyed by the sha256 of everything they contain.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO / "scripts" / "build-kubernetes.sh"
BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubeadm", "kubectl")
CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
KUBERNETES_VERSION = "v1.20.2"
PAUSE_IMAGE = "k8s.gcr.io/pause:3.2"  # kubeadm 1.20's constants_unix.go PauseVersion
ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
IMAGE_RECIPE = "1"  # bump when the image layout below changes
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ImagesUnavailable(RuntimeError):
    """The binaries are not built (run scripts/setup.sh) or Debian's etcd is missing."""


def bin_dir() -> Path:
    """The cache directory of the built binaries (HL_K8S_BIN overrides); raises if incomplete."""
    override = os.environ.get("HL_K8S_BIN")
    if override:
        path = Path(override)
    else:
        done = subprocess.run(["bash", str(BUILD_SCRIPT), "--dir"], capture_output=True, text=True)
        if done.returncode != 0:
            raise ImagesUnavailable(f"{BUILD_SCRIPT.name} --dir failed: {done.stderr.strip()}")
        path = Path(done.stdout.strip())
    missing = [b for b in (*BINARIES, "pause") if not os.access(path / b, os.X_OK)]
    if missing:
        raise ImagesUnavailable(
            f"Kubernetes binaries {', '.join(missing)} not built in {path}: run `bash scripts/setup.sh` "
            "(it builds them from Debian's kubernetes source package, ~10 min once)"
        )
    return path


def etcd_version() -> str:
    """Debian's etcd-server version as an image tag (``3.4.23-4+b4`` -> ``3.4.23-4-b4``)."""
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "etcd-server"], capture_output=True, text=True)
    if done.returncode != 0 or not os.access(ETCD, os.X_OK):
        raise ImagesUnavailable("Debian's etcd-server is not installed: run `bash scripts/setup.sh`")
    return re.sub(r"[^A-Za-z0-9_.-]", "-", done.stdout.strip())


def image_tarballs() -> dict[str, Path]:
    """``{image name: OCI tarball}`` for every image a kubeadm node here runs; built once."""
    bins = bin_dir()
    etcd_tag = etcd_version()
    images: dict[str, dict[str, Path]] = {
        f"k8s.gcr.io/{b}:{KUBERNETES_VERSION}": {f"usr/local/bin/{b}": bins / b} for b in CONTROL_PLANE
    }
    images[f"k8s.gcr.io/etcd:{etcd_tag}"] = {
        "usr/local/bin/etcd": Path(ETCD), "usr/local/bin/etcdctl": Path(ETCDCTL), **_libraries(ETCD, ETCDCTL)
    }
    images[PAUSE_IMAGE] = {"pause": bins / "pause"}
    key = hashlib.sha256(IMAGE_RECIPE.encode())
    for name, files in sorted(images.items()):
        key.update(name.encode())
        for dest, src in sorted(files.items()):
            key.update(dest.encode() + _sha256(src).encode())
    out = bins.parent / f"images-{key.hexdigest()[:12]}"
    tarballs = {name: out / (_file_name(name) + ".tar") for name in images}
    if not all(p.exists() for p in tarballs.values()):
        out.mkdir(exist_ok=True)
        for name, files in images.items():
            _write_oci_tar(tarballs[name], name, files, entrypoint=["/pause"] if name == PAUSE_IMAGE else None)
    return tarballs


def etcd_image_tag() -> str:
    """The tag the kubeadm configuration gives etcd (see module doc)."""
    return etcd_version()


# -- internals --------------------------------------------------------------------------------


def _file_name(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", image)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _libraries(*programs: str) -> dict[str, Path]:
    """Shared libraries (and the ELF interpreter) of dynamically linked programs, by ``ldd``."""
    found: dict[str, Path] = {}
    for program in programs:
        out = subprocess.run(["ldd", program], capture_output=True, text=True).stdout
        for line in out.splitlines():
            match = re.search(r"(/\S+) \(0x", line)
            if match:
                path = match.group(1)
                found[path.lstrip("/")] = Path(os.path.realpath(path))
    return found


def _layer(files: dict[str, Path]) -> bytes:
    """One uncompressed layer: parent directories, then each file (mode 0755, root-owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(d)) for dest in files for d in Path(dest).parents if str(d) != "."} | {"tmp"})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for dest, src in sorted(files.items()):
            info = tarfile.TarInfo(dest)
            info.size, info.mode = src.stat().st_size, 0o755
            with open(src, "rb") as f:
                tar.addfile(info, f)
    return buf.getvalue()


def _write_oci_tar(target: Path, name: str, files: dict[str, Path], entrypoint: list[str] | None) -> None:
    """An OCI image layout tarball ``ctr images import`` names ``name`` (annotation)."""
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = _layer(files)
    layer_desc = blob(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV], **({"Entrypoint": entrypoint} if entrypoint else {})},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created_by": "hardline tests/support/k8s/images.py from the built binaries"}],
    }
    config_desc = blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    manifest_desc = blob(json.dumps(manifest, sort_keys=True).encode())
    index = {
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **manifest_desc,
            "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.rsplit(":", 1)[1]},
        }],
    }  # fmt: skip
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
        entries = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": json.dumps(index).encode()}
        entries.update({f"blobs/sha256/{d.split(':', 1)[1]}": data for d, data in blobs.items()})
        for path, data in entries.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, target)
