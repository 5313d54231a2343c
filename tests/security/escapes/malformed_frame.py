"""Send bytes that are not JSON."""

import maos_pod_client as pod

pod.send_raw(b"\xff\xfe not json {")
pod.recv_raw()
