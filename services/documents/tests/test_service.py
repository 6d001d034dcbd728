"""The documents service through the gateway: auth, gateway and documents run in-process."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import uuid
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest
from pypdf import PdfReader

from wharf_common.bus import EVENTS_EXCHANGE
from wharf_common.testing import Running, StartService
from wharf_documents.app import CONTEXT_KEY
from wharf_documents.app import spec as documents_spec
from wharf_documents.render import RenderRequest, RenderResult
from wharf_documents.settings import DocumentsSettings

Stack = Callable[..., Awaitable[tuple[Running, Running]]]

PASSWORD = "correct horse battery staple"


class Client:
    """The public API as one tenant's admin sees it."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self.http = http
        self.url = url
        self.headers = {"Authorization": f"Bearer {token}"}

    async def request(
        self, method: str, path: str, *, expect: int | None = None, **options: Any
    ) -> Any:
        headers = {**self.headers, **options.pop("headers", {})}
        async with self.http.request(
            method, f"{self.url}{path}", headers=headers, **options
        ) as response:
            body = await response.json()
            if expect is not None:
                assert response.status == expect, body
            return body

    async def upload(
        self,
        name: str,
        *,
        html: str | None = None,
        css: str | None = None,
        archive: bytes | None = None,
        expect: int = 201,
    ) -> Any:
        form = aiohttp.FormData(default_to_multipart=True)
        form.add_field("name", name)
        if html is not None:
            form.add_field("html", html)
        if css is not None:
            form.add_field("css", css)
        if archive is not None:
            form.add_field(
                "archive", archive, filename="template.zip", content_type="application/zip"
            )
        return await self.request("POST", "/v1/templates", data=form, expect=expect)

    async def render(self, expect: int = 202, **body: Any) -> Any:
        headers = {}
        if "idempotency_key" in body:
            headers["Idempotency-Key"] = body.pop("idempotency_key")
        return await self.request(
            "POST", "/v1/documents", json=body, headers=headers, expect=expect
        )

    async def wait(self, path: str, timeout: float = 30.0) -> Any:
        """Poll `path` until its status is final; return the last answer."""
        async with asyncio.timeout(timeout):
            while True:
                body = await self.request("GET", path, expect=200)
                if body["status"] in ("done", "failed"):
                    return body
                await asyncio.sleep(0.1)

    async def download(self, url: str) -> bytes:
        async with self.http.get(url) as response:
            assert response.status == 200
            return await response.read()


async def signup(http: aiohttp.ClientSession, url: str, email: str) -> Client:
    """A new tenant through the gateway, logged in as its admin."""
    body = {"name": email, "admin_email": email, "admin_password": PASSWORD}
    async with http.post(f"{url}/v1/tenants", json=body) as response:
        assert response.status == 201, await response.text()
    login = {"email": email, "password": PASSWORD}
    async with http.post(f"{url}/v1/auth/token", json=login) as response:
        assert response.status == 200, await response.text()
        token = (await response.json())["access_token"]
    return Client(http, url, token)


def zip_directory(directory: Path, index: str) -> bytes:
    """A template archive of a directory whose `index` file becomes index.html."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(directory.rglob("*")):
            if not path.is_file():
                continue
            name = "index.html" if path.name == index else str(path.relative_to(directory))
            archive.write(path, name)
    return buffer.getvalue()


@asynccontextmanager
async def listen(amqp_url: str, pattern: str = "document.#") -> AsyncIterator[list[Any]]:
    """Collect the bodies of events matching `pattern` while the block runs."""
    connection = await aio_pika.connect(amqp_url)
    received: list[Any] = []
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(
            EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, pattern)

        async def collect(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                envelope = json.loads(message.body)
                received.append({"type": envelope["type"], **(envelope.get("body") or {})})

        await queue.consume(collect)
        yield received
    finally:
        await connection.close()


async def wait_for_events(received: list[Any], count: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while len(received) < count:
            await asyncio.sleep(0.05)


def pdf_text(data: bytes) -> tuple[int, str]:
    reader = PdfReader(io.BytesIO(data))
    return len(reader.pages), "\n".join(page.extract_text() for page in reader.pages)


@pytest.mark.parametrize(
    ("sample", "index", "pages", "phrases"),
    [
        ("invoice", "invoice.html", 1, ["Invoice", "Website design", "10,545.00"]),
        ("letter", "letter.html", 1, ["Cher Aurélien Leno", "Bon de commande"]),
        ("report", "report.html", 8, ["Report example", "Table of contents"]),
    ],
)
async def test_corpus_samples_render_through_the_service(
    stack: Stack,
    http: aiohttp.ClientSession,
    amqp_url: str,
    samples_dir: Path,
    sample: str,
    index: str,
    pages: int,
    phrases: list[str],
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload(sample, archive=zip_directory(samples_dir / sample, index))

    async with listen(amqp_url) as events:
        job = await client.render(template=sample, filename=f"{sample}.pdf")
        done = await client.wait(f"/v1/documents/{job['id']}")
        await wait_for_events(events, 1)

    assert done["status"] == "done", done
    assert done["pages"] == pages
    count, text = pdf_text(await client.download(done["url"]))
    assert count == pages
    assert done["bytes"] > 0
    for phrase in phrases:
        assert phrase in text
    assert events[0]["type"] == "document.rendered"
    assert events[0]["id"] == job["id"]


async def test_idempotency_key_yields_one_job(stack: Stack, http: aiohttp.ClientSession) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    other = await signup(http, gateway.url, "b@example.com")
    await client.upload("note", html="<p>{{ text }}</p>")
    await other.upload("note", html="<p>{{ text }}</p>")

    first = await client.render(template="note", data={"text": "x"}, idempotency_key="k-1")
    again = await client.render(template="note", data={"text": "x"}, idempotency_key="k-1")
    theirs = await other.render(template="note", data={"text": "x"}, idempotency_key="k-1")
    fresh = await client.render(template="note", data={"text": "x"})

    assert again["id"] == first["id"]
    assert theirs["id"] != first["id"]
    assert fresh["id"] != first["id"]


async def test_new_versions_leave_old_ones_rendering(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    one = await client.upload("note", html="<p>first {{ n }}</p>")
    two = await client.upload("note", html="<p>second {{ n }}</p>", css="p { color: red }")

    latest = await client.render(template="note", data={"n": 1})
    pinned = await client.render(template="note", version=1, data={"n": 2})
    listed = await client.request("GET", "/v1/templates", expect=200)

    assert (one["version"], two["version"]) == (1, 2)
    latest_done = await client.wait(f"/v1/documents/{latest['id']}")
    pinned_done = await client.wait(f"/v1/documents/{pinned['id']}")
    assert latest_done["version"] == 2
    assert "second 1" in pdf_text(await client.download(latest_done["url"]))[1]
    assert "first 2" in pdf_text(await client.download(pinned_done["url"]))[1]
    assert [(t["name"], t["version"]) for t in listed["templates"]] == [("note", 2), ("note", 1)]
    await client.render(template="note", version=3, expect=404)


async def test_tenants_see_only_their_own(stack: Stack, http: aiohttp.ClientSession) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    other = await signup(http, gateway.url, "b@example.com")
    await client.upload("private", html="<p>mine</p>")
    job = await client.render(template="private")

    await other.request("GET", f"/v1/documents/{job['id']}", expect=404)
    await other.render(template="private", expect=404)
    assert (await other.request("GET", "/v1/templates", expect=200))["templates"] == []
    assert (await client.wait(f"/v1/documents/{job['id']}"))["status"] == "done"


async def test_slow_template_fails_at_its_budget_and_the_next_render_works(
    stack: Stack, http: aiohttp.ClientSession, amqp_url: str
) -> None:
    gateway, _ = await stack(render_timeout=1.5)
    client = await signup(http, gateway.url, "a@example.com")
    never = "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"
    await client.upload("never", html=never)
    await client.upload("quick", html="<p>quick</p>")

    async with listen(amqp_url, "document.failed") as events:
        slow = await client.render(template="never")
        failed = await client.wait(f"/v1/documents/{slow['id']}")
        await wait_for_events(events, 1)
    quick = await client.render(template="quick")
    done = await client.wait(f"/v1/documents/{quick['id']}")

    assert failed["status"] == "failed"
    assert failed["reason"] == "deadline_exceeded"
    assert events[0]["reason"] == "deadline_exceeded"
    assert done["status"] == "done"


async def test_job_deadline_set_per_request_fails_the_job(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    never = "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"
    await client.upload("never", html=never)

    job = await client.render(template="never", deadline_seconds=1.0)
    failed = await client.wait(f"/v1/documents/{job['id']}")

    assert failed["reason"] == "deadline_exceeded"


@pytest.mark.parametrize(
    "html",
    [
        '<img src="http://169.254.169.254/latest/meta-data/">',
        '<link rel="stylesheet" href="file:///etc/passwd">',
    ],
)
async def test_ssrf_and_local_files_fail_with_fetch_refused(
    stack: Stack, http: aiohttp.ClientSession, html: str
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("probe", html=html)

    job = await client.render(template="probe")
    failed = await client.wait(f"/v1/documents/{job['id']}")

    assert failed["status"] == "failed"
    assert failed["reason"] == "fetch_refused"
    assert failed["url"] is None


async def test_template_errors_fail_the_job_not_the_upload(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("unsafe", html="{{ ''.__class__.__mro__ }}")
    await client.upload("both", html="<p>", archive=b"zip", expect=400)
    await client.upload("bad-zip", archive=b"not a zip", expect=400)
    await client.upload("broken", html="<p>{% for x in %}</p>", expect=422)

    job = await client.render(template="unsafe")

    assert (await client.wait(f"/v1/documents/{job['id']}"))["reason"] == "template_error"


@pytest.mark.parametrize(("bundle", "expected"), [("pdf", "application/pdf"), ("zip", "zip")])
async def test_batch_renders_every_item_and_bundles_them(
    stack: Stack, http: aiohttp.ClientSession, amqp_url: str, bundle: str, expected: str
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("label", html="<p>Parcel {{ n }}</p>")
    items = [{"data": {"n": n}, "filename": f"parcel-{n}.pdf"} for n in range(30)]

    async with listen(amqp_url, "document.batch.#") as events:
        batch = await client.request(
            "POST",
            "/v1/document-batches",
            json={"template": "label", "items": items, "bundle": bundle},
            expect=202,
        )
        done = await client.wait(f"/v1/document-batches/{batch['id']}", timeout=60)
        await wait_for_events(events, 1)

    assert batch["total"] == 30
    assert (done["status"], done["done"], done["failed"]) == ("done", 30, 0)
    data = await client.download(done["url"])
    assert len(data) == done["bundle_bytes"]
    if bundle == "pdf":
        pages, text = pdf_text(data)
        assert pages == 30
        assert text.index("Parcel 0") < text.index("Parcel 29")
    else:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            assert "Parcel 7" in pdf_text(archive.read("parcel-7.pdf"))[1]
        assert len(names) == 30
    assert events == [
        {
            "type": "document.batch.completed",
            "id": batch["id"],
            "status": "done",
            "total": 30,
            "done": 30,
            "failed": 0,
            "bundle_format": bundle,
            "bundle_bytes": len(data),
            "reason": None,
        }
    ]


async def test_batch_counts_failed_items(stack: Stack, http: aiohttp.ClientSession) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("strict", html="<p>{{ 100 // n }}</p>")
    items = [{"data": {"n": n}} for n in (1, 0, 2)]

    batch = await client.request(
        "POST", "/v1/document-batches", json={"template": "strict", "items": items}, expect=202
    )
    done = await client.wait(f"/v1/document-batches/{batch['id']}")

    assert (done["status"], done["done"], done["failed"]) == ("done", 2, 1)
    with zipfile.ZipFile(io.BytesIO(await client.download(done["url"]))) as archive:
        assert archive.namelist() == ["document-1.pdf", "document-3.pdf"]


@pytest.mark.parametrize("reserved", [0, 1])
async def test_big_batch_does_not_hold_up_another_tenants_document(
    stack: Stack, http: aiohttp.ClientSession, reserved: int
) -> None:
    gateway, documents = await stack(render_workers=2, batch_window=4, reserved_workers=reserved)
    busy = await signup(http, gateway.url, "a@example.com")
    other = await signup(http, gateway.url, "b@example.com")
    slow = "{% for i in range(400) %}<p>line {{ i }} of item {{ n }}</p>{% endfor %}"
    await busy.upload("long", html=slow)
    await other.upload("short", html="<p>hello</p>")
    items = [{"data": {"n": n}} for n in range(200)]
    batch = await busy.request(
        "POST", "/v1/document-batches", json={"template": "long", "items": items}, expect=202
    )
    await asyncio.sleep(1.0)

    started = asyncio.get_running_loop().time()
    job = await other.render(template="short")
    done = await other.wait(f"/v1/documents/{job['id']}", timeout=10)
    waited = asyncio.get_running_loop().time() - started
    progress = await busy.request("GET", f"/v1/document-batches/{batch['id']}", expect=200)

    assert done["status"] == "done"
    assert waited < 3.0
    assert progress["status"] == "rendering"
    assert progress["done"] < 200
    pending = await documents.runtime.db.fetchval(
        "SELECT count(*) FROM documents.jobs WHERE batch_id = $1 AND NOT fed",
        uuid.UUID(batch["id"]),
    )
    assert pending > 100
    # What every scaler adds to the queue depth: the items not yet on the bus.
    assert 0 < await documents.runtime.held_backlog() <= pending


async def test_batch_window_follows_the_tasks_and_keeps_fairness(
    stack: Stack,
    http: aiohttp.ClientSession,
    start_service: StartService,
    documents_settings: DocumentsSettings,
) -> None:
    changes = {"render_workers": 1, "batch_window": 2}
    gateway, documents = await stack(**changes)
    second = await start_service(documents_spec(), documents_settings.model_copy(update=changes))
    busy = await signup(http, gateway.url, "a@example.com")
    other = await signup(http, gateway.url, "b@example.com")
    slow = "{% for i in range(400) %}<p>line {{ i }} of item {{ n }}</p>{% endfor %}"
    await busy.upload("long", html=slow)
    await other.upload("short", html="<p>hello</p>")
    items = [{"data": {"n": n}} for n in range(200)]
    batch = await busy.request(
        "POST", "/v1/document-batches", json={"template": "long", "items": items}, expect=202
    )
    batch_id = uuid.UUID(batch["id"])
    in_flight = (
        "SELECT count(*) FROM documents.jobs WHERE batch_id = $1"
        " AND fed AND status IN ('queued', 'rendering')"
    )
    windows = [r.runtime.app[CONTEXT_KEY].window for r in (documents, second)]

    # Two consumers of the batch queue: each task tops the window up to 2 x 2,
    # more than one task alone ever keeps in flight.
    async with asyncio.timeout(30):
        while [window.target for window in windows] != [4, 4]:
            await asyncio.sleep(0.1)
        while await documents.runtime.db.fetchval(in_flight, batch_id) <= 2:
            await asyncio.sleep(0.1)
    job = await other.render(template="short")
    done = await other.wait(f"/v1/documents/{job['id']}", timeout=30)
    progress = await busy.request("GET", f"/v1/document-batches/{batch['id']}", expect=200)

    assert done["status"] == "done"
    # The single document did not wait for the batch to end.
    assert progress["status"] == "rendering"
    assert progress["done"] < 200


async def test_a_worker_killed_mid_render_is_retried(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gateway, documents = await stack(render_workers=1, retry_base_delay=0.1)
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("long", html="{% for i in range(3000) %}<p>line {{ i }}</p>{% endfor %}")
    ctx = documents.runtime.app[CONTEXT_KEY]
    worker = await ctx.renderer.pool.run(os.getpid)

    job = await client.render(template="long")
    async with asyncio.timeout(10):
        while (await client.request("GET", f"/v1/documents/{job['id']}"))["status"] != "rendering":
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)
    os.kill(worker, signal.SIGKILL)
    done = await client.wait(f"/v1/documents/{job['id']}", timeout=60)

    assert done["status"] == "done", done
    attempts = await ctx.db.fetchval(
        "SELECT attempts FROM documents.jobs WHERE id = $1", uuid.UUID(job["id"])
    )
    assert attempts == 2


def _doubling(step: str) -> str:
    return (
        '{% set ns = namespace(s="x") %}{% for i in range(40) %}'
        f"{{% set ns.s = {step} %}}{{% endfor %}}{{{{ ns.s|length }}}}"
    )


async def test_templates_that_double_a_string_fail_once_and_the_worker_goes_on(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gateway, documents = await stack(
        render_workers=1, render_max_memory_bytes=256 * 1024 * 1024, retry_base_delay=0.1
    )
    client = await signup(http, gateway.url, "a@example.com")
    templates = {
        "tilde": _doubling("ns.s ~ ns.s"),
        "plus": _doubling("ns.s + ns.s"),
        "join": _doubling("[ns.s, ns.s]|join"),
        "quick": "<p>quick</p>",
    }
    for name, html in templates.items():
        await client.upload(name, html=html)
    ctx = documents.runtime.app[CONTEXT_KEY]

    ids = {name: (await client.render(template=name))["id"] for name in templates}
    jobs = {name: await client.wait(f"/v1/documents/{ids[name]}") for name in templates}
    attempts = await ctx.db.fetchval(
        "SELECT max(attempts) FROM documents.jobs WHERE id = any($1::uuid[])",
        [uuid.UUID(job_id) for job_id in ids.values()],
    )

    assert jobs["tilde"]["reason"] == "template_error"
    assert "the joined string would be too long" in jobs["tilde"]["detail"]
    assert jobs["plus"]["reason"] == "template_error"
    assert "the joined sequence would be too long" in jobs["plus"]["detail"]
    # Filters are not bounded by the sandbox; the worker's memory cap stops them.
    assert jobs["join"]["reason"] == "too_large"
    assert "256 MiB" in jobs["join"]["detail"]
    assert jobs["quick"]["status"] == "done"
    assert attempts == 1


async def test_a_render_that_kills_its_worker_twice_is_not_retried_again(
    stack: Stack, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, documents = await stack(render_workers=1, retry_base_delay=0.1)
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("label", html="<p>label</p>")
    ctx = documents.runtime.app[CONTEXT_KEY]

    async def abort_the_worker(request: RenderRequest) -> RenderResult:
        return await ctx.renderer.pool.run(os.abort)

    monkeypatch.setattr(ctx.renderer, "render", abort_the_worker)
    job = await client.render(template="label")
    failed = await client.wait(f"/v1/documents/{job['id']}")
    attempts = await ctx.db.fetchval(
        "SELECT attempts FROM documents.jobs WHERE id = $1", uuid.UUID(job["id"])
    )

    assert failed["status"] == "failed"
    assert failed["reason"] == "worker_crashed"
    assert "on two attempts in a row" in failed["detail"]
    assert attempts == 2


@pytest.fixture
def local_storage(tmp_path: Path) -> str:
    """A file store the gateway serves signed URLs for, shared with documents."""
    return f"file://{tmp_path}/objects"


def on_gateway(gateway: Running, url: str) -> str:
    """A local signed URL sent to this test's gateway, whose port public_url cannot name."""
    parts = urlsplit(url)
    return f"{gateway.url}{parts.path}?{parts.query}"


async def put_upload(client: Client, gateway: Running, content: Any) -> str:
    """Upload `content` as JSON through a signed URL; return its ref."""
    body = json.dumps(content).encode()
    upload = await client.request(
        "POST",
        "/v1/uploads",
        json={"content_type": "application/json", "size": len(body)},
        expect=201,
    )
    assert upload["method"] == "PUT"
    headers = {"Content-Type": "application/json"}
    async with client.http.put(
        on_gateway(gateway, upload["url"]), data=body, headers=headers
    ) as response:
        assert response.status == 200, await response.text()
    ref: str = upload["ref"]
    return ref


async def test_batch_renders_an_item_list_uploaded_by_signed_url(
    stack: Stack, http: aiohttp.ClientSession, local_storage: str
) -> None:
    gateway, _ = await stack(storage_url=local_storage)
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("label", html="<p>Parcel {{ n }}</p>")
    items = [{"data": {"n": n}, "filename": f"parcel-{n}.pdf"} for n in range(5)]
    ref = await put_upload(client, gateway, items)

    batch = await client.request(
        "POST", "/v1/document-batches", json={"template": "label", "items_ref": ref}, expect=202
    )
    done = await client.wait(f"/v1/document-batches/{batch['id']}", timeout=60)

    assert "/uploads/" in ref
    assert batch["total"] == 5
    assert (done["status"], done["done"], done["failed"]) == ("done", 5, 0)


async def test_document_renders_data_uploaded_by_signed_url(
    stack: Stack, http: aiohttp.ClientSession, local_storage: str
) -> None:
    gateway, _ = await stack(storage_url=local_storage)
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("note", html="<p>{{ text }}</p>")
    ref = await put_upload(client, gateway, {"text": "from an upload"})

    job = await client.render(template="note", data_ref=ref)
    done = await client.wait(f"/v1/documents/{job['id']}")

    assert done["status"] == "done", done
    assert "from an upload" in pdf_text(await client.download(on_gateway(gateway, done["url"])))[1]


async def test_refs_of_other_tenants_and_missing_refs_are_not_found(
    stack: Stack, http: aiohttp.ClientSession, local_storage: str
) -> None:
    gateway, _ = await stack(storage_url=local_storage)
    client = await signup(http, gateway.url, "a@example.com")
    other = await signup(http, gateway.url, "b@example.com")
    await client.upload("note", html="<p>{{ text }}</p>")
    theirs = await put_upload(other, gateway, {"text": "secret"})
    mine = await put_upload(client, gateway, [{"data": {"text": "x"}}])
    missing = f"{mine.rsplit('/', 1)[0]}/{uuid.uuid4()}"

    foreign = await client.render(template="note", data_ref=theirs, expect=404)
    absent = await client.render(template="note", data_ref=missing, expect=404)
    batch = {"template": "note", "items_ref": theirs}
    await client.request("POST", "/v1/document-batches", json=batch, expect=404)

    assert foreign["detail"] == absent["detail"] == "data_ref names no upload of this tenant"


async def test_refs_are_validated_like_inline_data(
    stack: Stack, http: aiohttp.ClientSession, local_storage: str
) -> None:
    gateway, _ = await stack(storage_url=local_storage)
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("note", html="<p>{{ text }}</p>")
    bad_items = await put_upload(client, gateway, [{"data": {"text": "x"}}, {"data": 1}])
    not_object = await put_upload(client, gateway, ["x"])

    both = await client.render(template="note", data={"a": 1}, data_ref=bad_items, expect=422)
    neither = await client.request(
        "POST", "/v1/document-batches", json={"template": "note"}, expect=422
    )
    items = await client.request(
        "POST",
        "/v1/document-batches",
        json={"template": "note", "items_ref": bad_items},
        expect=422,
    )
    data = await client.render(template="note", data_ref=not_object, expect=422)

    assert "data_ref" in json.dumps(both)
    assert "items_ref" in json.dumps(neither)
    assert "items.1.data" in items["detail"]
    assert "data" in data["detail"]


async def test_idempotency_key_yields_one_batch_and_refuses_another_request(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    other = await signup(http, gateway.url, "b@example.com")
    await client.upload("note", html="<p>{{ text }}</p>")
    await other.upload("note", html="<p>{{ text }}</p>")
    body = {"template": "note", "items": [{"data": {"text": "x"}}]}
    key = {"Idempotency-Key": "batch-1"}

    def post(who: Client, json: Any, expect: int) -> Any:
        return who.request("POST", "/v1/document-batches", json=json, headers=key, expect=expect)

    first = await post(client, body, 202)
    again = await post(client, {**body, "bundle": "zip"}, 202)
    theirs = await post(other, body, 202)
    changed = await post(client, {**body, "bundle": "pdf"}, 422)
    document = await client.render(template="note", data={"text": "x"}, idempotency_key="d-1")
    other_document = await client.render(
        template="note", data={"text": "y"}, idempotency_key="d-1", expect=422
    )

    assert again["id"] == first["id"]
    assert theirs["id"] != first["id"]
    assert changed["detail"] == "Idempotency-Key reused with a different request"
    assert document["status"] in ("queued", "rendering", "done")
    assert other_document["detail"] == changed["detail"]


async def test_batch_items_name_each_failure_and_its_reason(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    gateway, _ = await stack()
    client = await signup(http, gateway.url, "a@example.com")
    other = await signup(http, gateway.url, "b@example.com")
    await client.upload("strict", html="<p>{{ 100 // n }}</p>")
    items = [{"data": {"n": n}, "filename": f"n{n}.pdf"} for n in (1, 0, 2, 0)]
    batch = await client.request(
        "POST", "/v1/document-batches", json={"template": "strict", "items": items}, expect=202
    )
    path = f"/v1/document-batches/{batch['id']}"
    done = await client.wait(path)

    failed = await client.request("GET", f"{path}/items?status=failed", expect=200)
    first = await client.request("GET", f"{path}/items?limit=2", expect=200)
    rest = await client.request(
        "GET", f"{path}/items?limit=2&cursor={first['next_cursor']}", expect=200
    )
    await other.request("GET", f"{path}/items", expect=404)

    assert (done["status"], done["failed"]) == ("done", 2)
    reason = failed["items"][0]["reason"]
    assert done["failures"] == {reason: 2} and done["reason"] == reason
    assert [(i["index"], i["filename"]) for i in failed["items"]] == [(1, "n0.pdf"), (3, "n0.pdf")]
    assert all(i["detail"] for i in failed["items"])
    assert failed["next_cursor"] is None
    pages = first["items"] + rest["items"]
    assert [i["index"] for i in pages] == [0, 1, 2, 3]
    assert rest["next_cursor"] is None
    assert pages[0]["status"] == "done" and pages[0]["reason"] is None
    assert pages[0]["document"] == f"/v1/documents/{pages[0]['document_id']}"
    document = await client.request("GET", pages[0]["document"], expect=200)
    assert document["batch_id"] == batch["id"]


async def test_uploaded_items_that_are_not_a_json_array_say_so(
    stack: Stack, http: aiohttp.ClientSession, local_storage: str
) -> None:
    gateway, _ = await stack(storage_url=local_storage)
    client = await signup(http, gateway.url, "a@example.com")
    await client.upload("note", html="<p>{{ text }}</p>")
    null = await put_upload(client, gateway, None)
    nan = await put_upload(client, gateway, [{"data": {"n": float("nan")}}])

    def post(ref: str) -> Any:
        body = {"template": "note", "items_ref": ref}
        return client.request("POST", "/v1/document-batches", json=body, expect=422)

    assert (await post(null))["detail"] == "the upload at items_ref must hold a JSON array of items"
    assert (await post(nan))[
        "detail"
    ] == "the upload at items_ref holds NaN, which JSON does not allow"
