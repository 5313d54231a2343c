"""Replay a frame id the kernel already accepted."""

import maos_pod_client as pod

pod.request("admin", "heartbeat", {})
pod.send_raw(b'{"v":1,"id":1,"gw":"admin","op":"heartbeat","args":{}}')
pod.recv_raw()
