"""Container health check: exit 0 when the service's /healthz answers 200, else 1.

Reads the port as the service does (WHARF_OPS_PORT, else WHARF_HTTP_PORT) and uses only
the standard library, so images need no curl.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    """Probe /healthz once and return the exit code."""
    port = os.environ.get("WHARF_OPS_PORT") or os.environ.get("WHARF_HTTP_PORT") or "8080"
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except (OSError, urllib.error.URLError) as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
