"""``wharf demo``: the platform's main job, end to end, against a running stack.

A tenant with its users and a carrier key; shipments; carrier payloads that
move them; shipping labels and invoices rendered in batches with a bundle;
carrier documents fetched from an FTP server the demo runs itself; then a
summary of what came out, with log lines per service and each step's time.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from wharf_cli import demo_ftp
from wharf_cli.demo_payloads import Payload, folder_payloads, own_payloads
from wharf_cli.progress import Progress

SERVICES = ("gateway", "auth", "documents", "carrier-ingest", "log-sink")
PAYLOADS_QUEUE = "wharf.carrier-ingest.payloads"
# The log sink keeps its per-record logging out of the stream it consumes.
_QUIET = {"log-sink"}
PASSWORD = "wharf demo passphrase"
_SETTLE_SECONDS = 5.0

_T = TypeVar("_T")


class StepFailed(Exception):
    """A demo step could not finish; the message says what to do about it."""


@dataclass(frozen=True)
class DemoOptions:
    """What the demo runs against and how much it does."""

    url: str
    carriers: Path | None = None
    invoices: int = 12
    timeout: float = 180.0


@dataclass
class _Posted:
    """A payload the gateway accepted, and what carrier-ingest made of it once known."""

    name: str
    carrier: str
    request_id: str
    status_url: str
    outcome: str = "unknown"  # ingested, dead-lettered or unknown
    detail: str = ""


@dataclass
class _Results:
    steps: list[tuple[str, float]] = field(default_factory=list)
    shipments: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    payloads: list[_Posted] = field(default_factory=list)
    documents: list[tuple[str, str]] = field(default_factory=list)
    carrier_documents: dict[str, Any] = field(default_factory=dict)
    logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class _Api:
    """The public API, with errors turned into StepFailed."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url.rstrip("/")

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        api_key: str | None = None,
        expect: int = 200,
        **options: Any,
    ) -> Any:
        headers: dict[str, str] = dict(options.pop("headers", {}))
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if api_key:
            headers["X-API-Key"] = api_key
        try:
            async with self.http.request(
                method, f"{self.url}{path}", headers=headers, **options
            ) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise StepFailed(
                f"{method} {path}: the gateway at {self.url} did not answer ({exc})"
            ) from None
        if status != expect:
            raise StepFailed(f"{method} {path} answered {status}: {_detail(text)}")
        return json.loads(text) if text else None


def _detail(text: str) -> str:
    try:
        problem = json.loads(text)
    except ValueError:
        return text[:300]
    if isinstance(problem, dict):
        return str(problem.get("detail") or problem.get("title") or problem)[:300]
    return text[:300]


async def run(options: DemoOptions) -> int:
    """Run every step, print the summary; 1 with a message when a step fails."""
    results = _Results()
    print(f"Wharf demo against {options.url}", flush=True)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        demo = _Demo(_Api(http, options.url), options, results)
        try:
            await demo.run()
        except StepFailed as exc:
            print(f"\nwharf demo: {exc}", file=sys.stderr)
            _print_steps(results)
            return 1
    _print_summary(results)
    dead = [posted for posted in results.payloads if posted.outcome == "dead-lettered"]
    if dead:
        print(
            f"\nwharf demo: {len(dead)} of {len(results.payloads)} carrier payloads were"
            f" dead-lettered (see CARRIER PAYLOADS; wharf dlq list {PAYLOADS_QUEUE})",
            file=sys.stderr,
        )
        return 1
    return 0


class _Demo:
    def __init__(self, api: _Api, options: DemoOptions, results: _Results) -> None:
        self.api = api
        self.options = options
        self.results = results
        self.started = datetime.now(UTC)
        self.suffix = uuid.uuid4().hex[:8]
        self.tenant = ""
        self.admin = ""
        self.carrier_key = ""
        self.ops = ""

    async def run(self) -> None:
        payloads = self._payloads()
        await self._step("tenant, users, API key", self._tenant)
        await self._step("shipments", lambda: self._shipments(payloads))
        await self._step("carrier payloads", lambda: self._ingest(payloads))
        await self._step("payload outcomes", self._outcomes)
        await self._step("labels and invoices", self._documents)
        await self._step("carrier documents (FTP)", self._carrier_documents)
        await self._step("logs per service", self._logs)

    async def _step(self, name: str, action: Callable[[], Awaitable[_T]]) -> _T:
        print(f"- {name}", flush=True)
        started = time.monotonic()
        try:
            return await action()
        except StepFailed as exc:
            raise StepFailed(f"step {name!r} failed: {exc}") from None
        finally:
            self.results.steps.append((name, time.monotonic() - started))

    def _payloads(self) -> list[Payload]:
        folder = self.options.carriers
        if folder is None:
            return own_payloads()
        if not folder.is_dir():
            raise StepFailed(f"--carriers {folder}: not a directory")
        payloads, skipped = folder_payloads(folder)
        self.results.skipped = skipped
        for name, reason in skipped:
            print(f"  skipping {name}: {reason}", flush=True)
        if not payloads:
            raise StepFailed(f"--carriers {folder}: no file maps to a carrier format")
        return payloads

    async def _tenant(self) -> None:
        domain = f"demo-{self.suffix}.example.com"
        admin_email = f"admin@{domain}"
        created = await self.api.call(
            "POST",
            "/v1/tenants",
            json={"name": "Demo Freight", "admin_email": admin_email, "admin_password": PASSWORD},
            expect=201,
        )
        self.tenant = str(created["tenant_id"])
        self.admin = await self._login(admin_email)
        for email in (f"member@{domain}", f"ops@{domain}"):
            body = {"email": email, "password": PASSWORD, "roles": ["member"]}
            await self.api.call("POST", "/v1/users", token=self.admin, json=body, expect=201)
        key = await self.api.call(
            "POST",
            "/v1/api-keys",
            token=self.admin,
            json={"name": "demo carrier", "scopes": ["carrier:ingest"]},
            expect=201,
        )
        self.carrier_key = key["key"]
        await _grant_ops(f"ops@{domain}")
        self.ops = await self._login(f"ops@{domain}")
        print(f"  tenant admin {admin_email}, member and ops users, a carrier:ingest key")

    async def _login(self, email: str) -> str:
        body = {"email": email, "password": PASSWORD}
        tokens = await self.api.call("POST", "/v1/auth/token", json=body)
        return str(tokens["access_token"])

    async def _shipments(self, payloads: list[Payload]) -> None:
        wanted = list(dict.fromkeys(pair for p in payloads for pair in p.shipments))
        bar = Progress("creating shipments", len(wanted))
        for n, (carrier, number) in enumerate(wanted, start=1):
            body = {"carrier": carrier, "tracking_number": number, "reference": f"demo-{n}"}
            shipment = await self.api.call(
                "POST", "/v1/shipments", token=self.admin, json=body, expect=201
            )
            self.results.shipments.append(shipment)
            bar.update(n)
        bar.close()

    async def _ingest(self, payloads: list[Payload]) -> None:
        bar = Progress("posting payloads", len(payloads))
        for n, payload in enumerate(payloads, start=1):
            # Its own request id follows the payload into every log line it causes.
            request_id = f"demo-{self.suffix}-payload-{n}"
            params = {"tracking_number": payload.tracking_number} if payload.tracking_number else {}
            accepted = await self.api.call(
                "POST",
                f"/v1/carriers/{payload.carrier}/events",
                api_key=self.carrier_key,
                data=payload.body,
                params=params,
                headers={"Content-Type": payload.content_type, "X-Request-ID": request_id},
                expect=202,
            )
            status_url = f"/v1/carriers/{payload.carrier}/events/{accepted['ingest_id']}"
            self.results.payloads.append(
                _Posted(payload.name, payload.carrier, request_id, status_url)
            )
            bar.update(n)
        bar.close()

        shipments = self.results.shipments
        bar = Progress("shipments moving", len(shipments))
        deadline = time.monotonic() + min(self.options.timeout, 60)
        # A file from a folder may name numbers it has no events for: stop once nothing moves.
        last_move, moved = time.monotonic(), 0
        while True:
            for i, shipment in enumerate(shipments):
                if shipment["status"] == "pending":
                    path = f"/v1/shipments/{shipment['id']}"
                    shipments[i] = await self.api.call("GET", path, token=self.admin)
            now_moved = sum(1 for s in shipments if s["status"] != "pending")
            if now_moved != moved:
                moved, last_move = now_moved, time.monotonic()
            bar.update(moved)
            settled = moved and time.monotonic() - last_move > _SETTLE_SECONDS
            if moved == len(shipments) or settled or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        bar.close("" if moved == len(shipments) else "(the rest have no events yet)")

    async def _outcomes(self) -> None:
        """What carrier-ingest made of each payload, from the payload's status route.

        A payload is ingested (its events stored) or dead-lettered, with the
        reason; one still pending when the wait ends stays unknown.
        """
        waiting = list(self.results.payloads)
        bar = Progress("payload outcomes", len(waiting))
        deadline = time.monotonic() + 30
        while waiting:
            for payload in list(waiting):
                found = await self.api.call("GET", payload.status_url, api_key=self.carrier_key)
                if found["status"] == "ingested":
                    payload.outcome = "ingested"
                    payload.detail = f"{found['counts']['events']} events ({found['outcome']})"
                elif found["status"] == "failed":
                    payload.outcome = "dead-lettered"
                    payload.detail = str(found["failure"]["reason"])
                else:
                    continue
                waiting.remove(payload)
            bar.update(len(self.results.payloads) - len(waiting))
            if not waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        dead = sum(1 for p in self.results.payloads if p.outcome == "dead-lettered")
        bar.close(f"({dead} dead-lettered)" if dead else "")

    async def _documents(self) -> None:
        sources = _example_templates()
        for name, html in sources.items():
            form = aiohttp.FormData(default_to_multipart=True)
            form.add_field("name", f"demo-{name.replace('_', '-')}")
            form.add_field("html", html)
            await self.api.call("POST", "/v1/templates", token=self.admin, data=form, expect=201)

        labels = self._label_items(_sample("shipping_label"))
        invoices = self._invoice_items(_sample("invoice"))
        batches = [
            ("shipping labels", "demo-shipping-label", labels, "pdf"),
            ("invoices", "demo-invoice", invoices, "zip"),
        ]
        started = []
        for title, template, items, bundle in batches:
            body = {"template": template, "items": items, "bundle": bundle}
            batch = await self.api.call(
                "POST", "/v1/document-batches", token=self.admin, json=body, expect=202
            )
            started.append((title, batch["id"]))

        total = len(labels) + len(invoices)
        bar = Progress("rendering", total)
        deadline = time.monotonic() + self.options.timeout
        finished: dict[str, dict[str, Any]] = {}
        while len(finished) < len(started):
            if time.monotonic() > deadline:
                bar.close("timed out")
                raise StepFailed(f"batches not finished after {self.options.timeout:g}s")
            progress = 0
            for title, batch_id in started:
                batch = finished.get(title) or await self.api.call(
                    "GET", f"/v1/document-batches/{batch_id}", token=self.admin
                )
                if batch["status"] in ("done", "failed"):
                    finished[title] = batch
                progress += batch["done"] + batch["failed"]
            bar.update(progress)
            await asyncio.sleep(0.3)
        bar.close()

        for title, batch in finished.items():
            if batch["status"] != "done":
                raise StepFailed(f"the {title} batch failed: {batch['reason']}")
            label = f"{title}: {batch['done']} rendered, {batch['failed']} failed"
            self.results.documents.append(
                (f"{label} ({batch['bundle_format']} bundle)", batch["url"])
            )

    def _label_items(self, sample: dict[str, Any]) -> list[dict[str, Any]]:
        items = []
        for shipment in self.results.shipments:
            data = copy.deepcopy(sample)
            number = shipment["tracking_number"]
            data["shipment"]["tracking_number"] = number
            data["shipment"]["tracking_url"] = f"https://track.example.com/{number}"
            data["shipment"]["reference"] = shipment.get("reference") or ""
            items.append({"data": data, "filename": f"label-{number}.pdf"})
        return items

    def _invoice_items(self, sample: dict[str, Any]) -> list[dict[str, Any]]:
        items = []
        for n in range(1, self.options.invoices + 1):
            data = copy.deepcopy(sample)
            data["invoice"]["number"] = f"INV-DEMO-{n:04d}"
            items.append({"data": data, "filename": f"invoice-{n:04d}.pdf"})
        return items

    async def _carrier_documents(self) -> None:
        try:
            config = demo_ftp.config_from_env()
        except ValueError as exc:
            raise StepFailed(str(exc)) from None
        numbers = [
            s["tracking_number"] for s in self.results.shipments if s["carrier"] == config.carrier
        ] or [s["tracking_number"] for s in self.results.shipments]
        with tempfile.TemporaryDirectory(prefix="wharf-demo-ftp-") as root:
            demo_ftp.write_documents(Path(root), numbers)
            try:
                server = demo_ftp.DemoFtpServer(config, Path(root))
            except OSError as exc:
                raise StepFailed(
                    f"cannot serve FTP on {config.host}:{config.port} ({exc}); is another"
                    " demo running?"
                ) from None
            with server:
                job = await self._fetch_documents(config, numbers)
        self.results.carrier_documents = job

    async def _fetch_documents(self, config: demo_ftp.FtpConfig, numbers: list[str]) -> Any:
        body = {"carrier": config.carrier, "tracking_numbers": numbers}
        try:
            job = await self.api.call(
                "POST", "/v1/carrier-documents", token=self.admin, json=body, expect=202
            )
        except StepFailed as exc:
            if "no document server" not in str(exc):
                raise
            raise StepFailed(
                f"{exc}. carrier-ingest reads its FTP servers at start from WHARF_CARRIER_FTP;"
                " run the stack with `wharf up --demo`, or start it with"
                f" WHARF_CARRIER_FTP='{config.setting()}'"
            ) from None

        bar = Progress("fetching over FTP", job["total"])
        deadline = time.monotonic() + self.options.timeout
        while job["status"] == "running":
            if time.monotonic() > deadline:
                bar.close("timed out")
                raise StepFailed(f"carrier documents not fetched after {self.options.timeout:g}s")
            await asyncio.sleep(0.3)
            job = await self.api.call("GET", f"/v1/carrier-documents/{job['id']}", token=self.admin)
            bar.update(job["done"] + job["missing"])
        bar.close()
        if job["status"] != "completed":
            raise StepFailed(f"the carrier-documents job ended {job['status']}: {job}")
        if job.get("manifest_url"):
            async with self.api.http.get(job["manifest_url"]) as response:
                if response.status == 200:
                    job["manifest"] = await response.json(content_type=None)
        return job

    async def _logs(self) -> None:
        since = self.started.isoformat()
        deadline = time.monotonic() + 20
        expected = [service for service in SERVICES if service not in _QUIET]
        bar = Progress("waiting for log records", len(expected))
        while True:
            for service in SERVICES:
                params = {"service": service, "since": since, "limit": "1000"}
                found = await self.api.call("GET", "/v1/logs", token=self.ops, params=params)
                self.results.logs[service] = found["records"]
            seen = sum(1 for service in expected if self.results.logs[service])
            bar.update(seen)
            if seen == len(expected) or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        bar.close()


async def _grant_ops(email: str) -> None:
    # The ops role is granted from the command line only, as an operator would.
    command = [sys.executable, "-m", "wharf_auth", "grant-ops", email]
    try:
        done = await asyncio.to_thread(
            subprocess.run, command, capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StepFailed(f"python -m wharf_auth grant-ops did not run: {exc}") from None
    if done.returncode != 0:
        raise StepFailed(f"python -m wharf_auth grant-ops failed: {done.stderr.strip()[-300:]}")


def _examples_dir() -> Path:
    # Found without importing the documents service, which would pull in WeasyPrint.
    spec = importlib.util.find_spec("wharf_documents")
    for location in (spec and spec.submodule_search_locations) or []:
        folder = Path(location) / "examples"
        if folder.is_dir():
            return folder
    raise StepFailed("the documents service (wharf_documents) is not installed here")


def _example_templates() -> dict[str, str]:
    folder = _examples_dir()
    return {name: (folder / f"{name}.html").read_text("utf-8") for name in _EXAMPLES}


def _sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_examples_dir() / f"{name}.json").read_text("utf-8"))
    return data


_EXAMPLES = ("shipping_label", "invoice")


def _print_steps(results: _Results) -> None:
    print("\nSTEP                           SECONDS")
    for name, seconds in results.steps:
        print(f"{name:<30} {seconds:7.2f}")
    print(f"{'total':<30} {sum(s for _, s in results.steps):7.2f}")


def _print_summary(results: _Results) -> None:
    print("\nSHIPMENTS")
    print(f"  {'CARRIER':<12} {'TRACKING NUMBER':<26} {'STATUS':<18} EVENTS")
    for shipment in results.shipments:
        events = len(shipment.get("events") or [])
        print(
            f"  {shipment['carrier']:<12} {shipment['tracking_number']:<26}"
            f" {shipment['status']:<18} {events}"
        )

    print("\nCARRIER PAYLOADS")
    counts = {outcome: 0 for outcome in ("ingested", "dead-lettered", "unknown")}
    for posted in results.payloads:
        counts[posted.outcome] += 1
    print(
        f"  {len(results.payloads)} posted: {counts['ingested']} ingested,"
        f" {counts['dead-lettered']} dead-lettered, {counts['unknown']} still pending"
    )
    for posted in results.payloads:
        if posted.outcome != "ingested":
            reason = posted.detail.partition(f"{PAYLOADS_QUEUE}: ")[2] or posted.detail
            print(f"  {posted.outcome}: {posted.name} as {posted.carrier}  {reason[:160]}")
    for name, reason in results.skipped:
        print(f"  skipped: {name} ({reason})")

    print("\nDOCUMENTS")
    for label, url in results.documents:
        print(f"  {label}\n    {url}")
    job = results.carrier_documents
    if job:
        print(
            f"  carrier documents ({job['carrier']}): {job['done']} fetched,"
            f" {job['missing']} missing; manifest\n    {job.get('manifest_url')}"
        )
        for number, entry in sorted((job.get("manifest") or {}).get("documents", {}).items()):
            print(f"    {number}: {entry.get('url') or entry.get('missing')}")

    print("\nLOG LINES PER SERVICE (since the demo started)")
    for service, records in results.logs.items():
        more = "+" if len(records) >= 1000 else ""
        latest = records[0]["message"][:70] if records else ""
        print(f"  {service:<16} {len(records):>5}{more:<1}  latest: {latest}")

    _print_steps(results)
