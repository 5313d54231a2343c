"""Address a gateway that does not exist."""

import maos_pod_client as pod

pod.send_raw(b'{"v":1,"id":1,"gw":"kernel","op":"shutdown","args":{}}')
pod.recv_raw()
