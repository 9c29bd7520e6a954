"""The gateway under systemd: READY=1 only once it has replayed its journal and reconciled,
WATCHDOG=1 from its loop, STATUS= in words, STOPPING=1 on SIGTERM (exit 0)."""
import signal
import socket
import time

from ttq_stack import TradingStack


def test_gateway_speaks_systemd_notify(children, venue, tmp_path):
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(0.5)
    s = TradingStack(children, venue, tmp_path)
    try:
        s.stop_gateway()                                # again, with a notify socket
        s.start_gateway(env={"NOTIFY_SOCKET": sock_path})
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not ("WATCHDOG=1" in seen and any(m.startswith("STATUS=") for m in seen)):
            try:
                msg = sock.recv(4096).decode()
            except TimeoutError:
                continue
            if msg == "READY=1":
                assert "ready:" in s.gateway_log()      # said only after replay and reconciliation
            seen.append(msg)
        assert seen.index("READY=1") < seen.index("WATCHDOG=1"), seen
        status = next(m for m in seen if m.startswith("STATUS="))
        assert "orders" in status and "kill switch off" in status, status
        s.gateway.send_signal(signal.SIGTERM)
        assert s.gateway.wait(timeout=20) == 0
        rest = []
        try:
            while True:
                rest.append(sock.recv(4096).decode())
        except TimeoutError:
            pass
        assert "STOPPING=1" in rest
    finally:
        sock.close()
        s.close()
