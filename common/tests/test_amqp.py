from __future__ import annotations

import asyncio

import aio_pika
import aiormq
from yarl import URL

from wharf_common.amqp import CorkedTCPTransportFactory, CorkedWriter
from wharf_common.bus import Bus


async def test_writes_of_one_loop_turn_leave_in_one_send() -> None:
    received: list[bytes] = []
    got_all = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.append(data)
            if sum(map(len, received)) >= 9:
                got_all.set()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    factory = CorkedTCPTransportFactory()
    _, writer = await factory.create(URL(f"amqp://127.0.0.1:{port}/"))
    assert isinstance(writer, CorkedWriter)
    sends: list[bytes] = []
    transport_write = writer.transport.write

    def counting_write(data: bytes) -> None:
        sends.append(data)
        transport_write(data)

    writer.transport.write = counting_write  # type: ignore[method-assign]
    for chunk in (b"abc", b"def", b"ghi"):
        writer.write(chunk)
    assert sends == []
    await asyncio.wait_for(got_all.wait(), 5)
    assert sends == [b"abcdefghi"]
    assert b"".join(received) == b"abcdefghi"

    writer.write(b"last")
    writer.close()
    await writer.wait_closed()
    assert sends[-1] == b"last"
    server.close()
    await server.wait_closed()


async def test_the_bus_talks_over_the_corked_transport(amqp_url: str) -> None:
    bus = Bus(amqp_url, service="test")
    await bus.connect()
    try:
        channel = await bus.publish_channel.get_underlay_channel()
        assert isinstance(channel, aiormq.Channel)
        connection = channel.connection
        assert isinstance(connection._transport_factory, CorkedTCPTransportFactory)
        queue = await bus.publish_channel.declare_queue(exclusive=True)
        for number in range(50):
            await bus.publish_channel.default_exchange.publish(
                aio_pika.Message(str(number).encode()), queue.name
            )
        bodies = []
        async with queue.iterator() as messages:
            async for message in messages:
                await message.ack()
                bodies.append(int(message.body))
                if len(bodies) == 50:
                    break
        assert bodies == list(range(50))
    finally:
        await bus.close()
