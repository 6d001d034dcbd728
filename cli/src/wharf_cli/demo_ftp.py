"""The demo's carrier FTP server: pyftpdlib in a thread, serving generated PDFs."""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# pyftpdlib still builds on asyncore and asynchat, deprecated since Python 3.12.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

DEFAULT_PORT = 2121
DEFAULT_CARRIER = "fedex"
DEFAULT_USER = "wharf-demo"
DEFAULT_PASSWORD = "wharf-demo-ftp"


@dataclass(frozen=True)
class FtpConfig:
    """Which carrier's documents the demo serves, and where carrier-ingest looks for them."""

    carrier: str
    host: str
    port: int
    user: str
    password: str

    def setting(self) -> str:
        """The value of WHARF_CARRIER_FTP that points carrier-ingest at this server."""
        server = {"host": self.host, "port": self.port, "user": self.user}
        return json.dumps({self.carrier: {**server, "password": self.password}})


def default_config() -> FtpConfig:
    """The server `wharf up --demo` configures and `wharf demo` starts."""
    return FtpConfig(DEFAULT_CARRIER, "127.0.0.1", DEFAULT_PORT, DEFAULT_USER, DEFAULT_PASSWORD)


def config_from_env() -> FtpConfig:
    """The first local server named in WHARF_CARRIER_FTP, else the default one."""
    raw = os.environ.get("WHARF_CARRIER_FTP")
    if not raw:
        return default_config()
    servers: dict[str, Any] = json.loads(raw)
    for carrier, server in servers.items():
        if server.get("host") in ("127.0.0.1", "localhost"):
            return FtpConfig(
                carrier,
                "127.0.0.1",
                int(server.get("port", 21)),
                str(server.get("user", "anonymous")),
                str(server.get("password", "")),
            )
    raise ValueError("WHARF_CARRIER_FTP names no server on 127.0.0.1 for the demo to run")


def pdf(text: str) -> bytes:
    """A one-page PDF that shows `text`; small and valid, with no PDF library."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 18 Tf 40 780 Td ({safe}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
        b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def write_documents(root: Path, tracking_numbers: list[str]) -> None:
    """One proof-of-delivery PDF per tracking number, named as carrier-ingest expects."""
    root.mkdir(parents=True, exist_ok=True)
    for number in tracking_numbers:
        (root / f"{number}.pdf").write_bytes(pdf(f"Proof of delivery {number}"))


class DemoFtpServer:
    """Serves `root` read-only to one user until closed."""

    def __init__(self, config: FtpConfig, root: Path) -> None:
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        authorizer = DummyAuthorizer()
        authorizer.add_user(config.user, config.password, str(root), perm="elr")
        handler = type("DemoHandler", (FTPHandler,), {"authorizer": authorizer})
        self._ftpd = FTPServer((config.host, config.port), handler)
        self._thread = threading.Thread(target=self._ftpd.serve_forever, daemon=True)

    def __enter__(self) -> DemoFtpServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._ftpd.close_all()
        self._thread.join(timeout=1)
