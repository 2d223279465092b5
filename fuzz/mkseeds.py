#!/usr/bin/env python3
"""mkseeds.py: writes the operation-sequence seeds of fuzz_milter into
fuzz/seeds/milter/ (the input format is described in fuzz_milter.c)."""
import os
import struct

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds", "milter")


def s(x):
    b = x.encode() if isinstance(x, str) else x
    assert len(b) < 256
    return bytes([len(b)]) + b


def chunk(x):
    b = x.encode() if isinstance(x, str) else x
    return struct.pack("<H", len(b)) + b


def client(a, n): return b"\x00" + s(a) + s(n)
def helo(h): return b"\x01" + s(h)
def macro(n, v): return b"\x02" + s(n) + s(v)
def mfrom(a): return b"\x03" + s(a)
def rcpt(a): return b"\x04" + s(a)
def header(n, v, leadspc=True): return (b"\x05" if leadspc else b"\x87") + s(n) + s(v)
EOH = b"\x06"
def body(c): return b"\x07" + chunk(c)
RESET = b"\x08"
EOM = b"\x09"


def limit(shift): return bytes([shift])


def message(i):
    return (mfrom("<sender%d@example.com>" % i) + rcpt("<bob@example.net>") +
            rcpt("postmaster@example.net") +
            header("From", " Sender <sender%d@example.com>" % i) +
            header("To", " bob@example.net") +
            header("Subject", " test\n folded") +
            header("X-Mailer", "no leading space", leadspc=False) + EOH +
            body("Hello,\r\nthis is a body.\r\n") + body(b"\x00binary\xff\r\n") + EOM)


SEEDS = {
    "one-message": limit(10) + client("192.0.2.10", "mail.example.com") +
    helo("mail.example.com") + macro("j", "mx.example.net") +
    macro("{daemon_name}", "smtpd") + message(1),
    "two-messages": limit(12) + client("2001:db8::1", "[2001:db8::1]") +
    helo("[IPv6:2001:db8::1]") + message(1) + RESET + message(2) + RESET,
    "truncated": limit(1) + client("198.51.100.7", "unknown") + helo("x") +
    mfrom("<>") + rcpt("<a@b>") + header("Subject", " " + "x" * 200) +
    body("y" * 300) + header("Late", " after body") + EOM,
    "no-headers": limit(8) + mfrom("<  spaced@example.com >") + body("just a body") + EOM,
    "abort-mid": limit(9) + message(3)[:40] + RESET + helo("again") + message(4),
    "macros": limit(15) + macro("i", "QID123") + macro("i", "QID124") +
    macro("{auth_authen}", "alice") + macro("", "") + client("", "") +
    header("", "") + EOH + EOH + body("") + EOM,
}

os.makedirs(OUT, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
