"""Send a frame past the channel's size cap."""

import maos_pod_client as pod

pod.send_raw(
    b'{"v":1,"id":1,"gw":"admin","op":"heartbeat","args":{"pad":"' + b"A" * 300_000 + b'"}}'
)
pod.recv_raw()
