#!/usr/bin/python3
"""dkim_sign.py: signs a message with dkimpy, for tests/t_dkim.sh.

    dkim_sign.py KEY.pem SELECTOR DOMAIN ALGO CANON [l] <in >out

KEY.pem is an RSA or ed25519 private key as openssl writes it; ALGO is
rsa-sha256, rsa-sha1 or ed25519-sha256; CANON is header/body
("relaxed/simple"); "l" adds an l= tag covering the body as it is now.
Writes the DKIM-Signature header followed by the message, LF line ends.
Needs the Debian packages python3-dkim, python3-nacl (ed25519) and
python3-cryptography.
"""
import base64
import sys

import dkim
from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519

HEADERS = [b"from", b"to", b"subject", b"date", b"message-id"]


def private_key(path):
    """The key as dkimpy takes it: raw base64 for ed25519, else PKCS#1."""
    with open(path, "rb") as f:
        key = ser.load_pem_private_key(f.read(), None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        raw = key.private_bytes(ser.Encoding.Raw, ser.PrivateFormat.Raw,
                                ser.NoEncryption())
        return base64.b64encode(raw)
    return key.private_bytes(ser.Encoding.PEM,
                             ser.PrivateFormat.TraditionalOpenSSL,
                             ser.NoEncryption())


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    keyfile, selector, domain, algo, canon = sys.argv[1:6]
    length = len(sys.argv) == 7 and sys.argv[6] == "l"
    hc, bc = canon.encode().split(b"/")
    msg = sys.stdin.buffer.read()
    sig = dkim.sign(msg, selector.encode(), domain.encode(),
                    private_key(keyfile), canonicalize=(hc, bc),
                    signature_algorithm=algo.encode(),
                    include_headers=HEADERS, length=length, linesep=b"\n")
    sys.stdout.buffer.write(sig + msg)


if __name__ == "__main__":
    main()
