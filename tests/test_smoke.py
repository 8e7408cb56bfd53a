from nats.js import JetStreamContext


async def test_publish_and_read_back(js: JetStreamContext) -> None:
    await js.add_stream(name="ORDERS", subjects=["orders.>"])
    ack = await js.publish("orders.new", b"hello")
    assert (ack.stream, ack.seq) == ("ORDERS", 1)
    msg = await js.get_msg("ORDERS", 1)
    assert msg.data == b"hello"
    assert msg.subject == "orders.new"
