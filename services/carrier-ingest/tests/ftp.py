"""A real FTP server for the carrier-documents tests: pyftpdlib, served from a thread."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Self

# pyftpdlib still builds on asyncore and asynchat, deprecated since Python 3.12.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

__all__ = ["FTP_PASSWORD", "FTPHandler", "FtpThread"]

FTP_PASSWORD = "ftp-pass-never-logged"


class FtpThread:
    """`handler` serving `root` read-only to `users` on a free loopback port, while entered."""

    def __init__(self, root: Path, handler: type[FTPHandler], users: Sequence[str]) -> None:
        authorizer = DummyAuthorizer()
        for user in users:
            authorizer.add_user(user, FTP_PASSWORD, str(root), perm="elr")
        handler.authorizer = authorizer
        handler.passive_ports = None
        self._ftpd = FTPServer(("127.0.0.1", 0), handler)
        self.port: int = self._ftpd.address[1]
        self._thread = threading.Thread(target=self._ftpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._ftpd.close_all()
        self._thread.join(timeout=5)
