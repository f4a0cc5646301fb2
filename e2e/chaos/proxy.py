"""A TCP relay between the operator and the API server that can be cut:
a network partition, seen from the operator only (everyone else still
reaches the API server directly).

While cut, nothing is relayed either way and new connections are accepted
but not answered: packets dropped, as a partition does (clients hang until
their own timeouts). Bytes already sent stay in the kernel's buffers and go
on when the relay heals, as TCP retransmission delivers them after a real
partition ends.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Optional


class Relay:
    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind((host, 0))
        self.server.listen(128)
        self.port = self.server.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self._closed = threading.Event()
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://{self.target[0]}:{self.port}"

    def cut(self) -> None:
        self.open.clear()

    def heal(self) -> None:
        self.open.set()

    def close(self) -> None:
        self._closed.set()
        self.open.set()
        self.server.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._pipe, args=(conn,), daemon=True).start()

    def _pipe(self, conn: socket.socket) -> None:
        self.open.wait()  # a connection made during the cut hangs
        upstream: Optional[socket.socket] = None
        try:
            upstream = socket.create_connection(self.target, timeout=10)
            upstream.settimeout(None)
            self.connections += 1
            peers = {conn: upstream, upstream: conn}
            while not self._closed.is_set():
                self.open.wait()
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                if not self.open.is_set():
                    continue  # cut while waiting: what was read stays unread
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            conn.close()
            if upstream is not None:
                upstream.close()
