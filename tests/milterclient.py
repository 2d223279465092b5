#!/usr/bin/python3
"""milterclient.py: a small MTA side of the milter protocol (version 6),
for tests that need to pause inside a message. It honours the steps the
filter skips and the replies it will not send.

    import milterclient
    c = milterclient.Conn(port)
    c.connect("client.example.org", "192.0.2.7"); c.helo("x")
    c.mail("a@example.com"); c.rcpt("b@example.net")
    c.header("Subject", "hi"); c.body(b"..."); final, data, mods = c.eom()
"""
import socket
import struct

NR = {"C": 0x1000, "H": 0x2000, "M": 0x4000, "R": 0x8000, "L": 0x80,
      "N": 0x40000, "B": 0x80000}
NO = {"C": 0x1, "H": 0x2, "M": 0x4, "R": 0x8, "B": 0x10, "L": 0x20,
      "N": 0x40}
LEADSPC = 0x100000
FINAL = b"acdrty"


class Conn:
    def __init__(self, port, timeout=60, actions=0x1ff):
        self.s = socket.create_connection(("127.0.0.1", port), timeout)
        self.s.settimeout(timeout)
        self._send(b"O", struct.pack(">III", 6, actions, 0x1fffff))
        cmd, data = self._read()
        assert cmd == b"O", cmd
        _, self.actions, self.proto = struct.unpack(">III", data[:12])

    def _send(self, cmd, data=b""):
        self.s.sendall(struct.pack(">I", len(data) + 1) + cmd + data)

    def _recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            if not chunk:
                raise EOFError("filter closed the connection")
            b += chunk
        return b

    def _read(self):
        n = struct.unpack(">I", self._recv(4))[0]
        d = self._recv(n)
        return d[:1], d[1:]

    def _step(self, letter, data):
        """Sends a step; returns the reply letter, or "-" for none."""
        if self.proto & NO.get(letter, 0):
            return "-"
        self._send(letter.encode(), data)
        if self.proto & NR.get(letter, 0):
            return "-"
        cmd, _ = self._read()
        return cmd.decode()

    def macro(self, stage, **kv):
        data = stage.encode()
        for k, v in kv.items():
            data += k.encode() + b"\0" + v.encode() + b"\0"
        self._send(b"D", data)

    def connect(self, host, ip):
        return self._step("C", host.encode() + b"\0" + b"4" +
                          struct.pack(">H", 25) + ip.encode() + b"\0")

    def helo(self, name):
        return self._step("H", name.encode() + b"\0")

    def mail(self, addr):
        return self._step("M", b"<" + addr.encode() + b">\0")

    def rcpt(self, addr):
        return self._step("R", b"<" + addr.encode() + b">\0")

    def header(self, name, value):
        if self.proto & LEADSPC:
            value = " " + value
        return self._step("L", name.encode() + b"\0" + value.encode() +
                          b"\0")

    def body(self, data):
        for i in range(0, len(data), 65535):
            r = self._step("B", data[i:i + 65535])
            if r == "s":
                return r
        return "c"

    def eom(self):
        """Returns the final reply letter and its data, and every
        modification as (letter, data)."""
        self._send(b"E")
        mods = []
        while True:
            cmd, data = self._read()
            if cmd in FINAL:
                return cmd.decode(), data, mods
            mods.append((cmd.decode(), data))

    def close(self):
        try:
            self._send(b"Q")
        finally:
            self.s.close()
