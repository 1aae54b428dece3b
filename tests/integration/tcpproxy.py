"""A loopback TCP proxy for fault tests: forwards byte for byte, and can turn every connection open at that
moment into a black hole (bytes are no longer forwarded in either direction, nothing is closed: what a NAT or
cloud load balancer does to an idle connection it forgot), or partition the network (new connections are
accepted and black-holed too) until healed."""

import select
import socket
import threading


class TcpProxy:
    def __init__(self, upstream_port, upstream_host="127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.pairs = []            # [client, upstream, blackholed]
        self.accepted = 0
        self.closing = False
        self.partitioned = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            pair = [client, up, self.partitioned]
            with self.lock:
                self.pairs.append(pair)
                self.accepted += 1
            threading.Thread(target=self._pump, args=(pair,), daemon=True).start()

    def _pump(self, pair):
        client, up, _ = pair
        socks = [client, up]
        while not self.closing:
            if pair[2]:
                # Black hole: hold both sockets open, read and forward nothing.
                threading.Event().wait(0.2)
                continue
            try:
                ready, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                break
            done = False
            for s in ready:
                if pair[2]:
                    break
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    done = True
                    break
                try:
                    (up if s is client else client).sendall(data)
                except OSError:
                    done = True
                    break
            if done:
                break
        if not pair[2] or self.closing:
            for s in socks:
                try:
                    s.close()
                except OSError:
                    pass

    def blackhole(self):
        """Every connection open now stops forwarding (silently, both directions)."""
        with self.lock:
            n = 0
            for p in self.pairs:
                if not p[2]:
                    p[2] = True
                    n += 1
            return n

    def partition(self):
        """A network partition: open connections become black holes and new ones are accepted but never
        forwarded, until `heal`."""
        with self.lock:
            self.partitioned = True
        return self.blackhole()

    def heal(self):
        """New connections are forwarded again (the black-holed ones stay dead, like forgotten NAT entries)."""
        with self.lock:
            self.partitioned = False

    def close(self):
        self.closing = True
        try:
            self.listener.close()
        except OSError:
            pass
        with self.lock:
            for client, up, _ in self.pairs:
                for s in (client, up):
                    try:
                        s.close()
                    except OSError:
                        pass
