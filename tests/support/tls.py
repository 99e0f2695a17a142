"""Real TLS material for a dockerd TCP listener (CA, server certificate and key) via openssl."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_tls(directory: Path) -> dict[str, str]:
    """Create ca.pem, cert.pem, key.pem in directory (root:root, 444/444/400)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca-key.pem", "ca.pem", "key.pem", "server.csr", "cert.pem"))

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
            "-days", "2", "-subj", "/CN=hardline-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    ext = directory / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))
    for path, mode in ((ca, 0o444), (cert, 0o444), (key, 0o400)):
        path.chmod(mode)
    return {"tlscacert": str(ca), "tlscert": str(cert), "tlskey": str(key)}
