"""Claim another agent's identity with an agent_id field."""

import maos_pod_client as pod

pod.send_raw(b'{"v":1,"id":1,"gw":"admin","op":"heartbeat","args":{},"agent_id":"agent-commander"}')
pod.recv_raw()
