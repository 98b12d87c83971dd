#!/usr/bin/env python3
"""Writes a small seed corpus for the NATS fuzz targets.

Run from anywhere: python3 protocols/nats/fuzz/seed_corpus.py
It (re)creates corpus/frame_parse/ and corpus/codec_decode/ next to this script.
The corpus directories are git-ignored; libFuzzer grows them as it runs.

frame_parse takes the raw client byte stream. codec_decode takes three header
bytes first: byte 0 bit 0 picks the tight limits, bytes 1..3 are the split
point (little-endian u16, taken modulo the stream length + 1).
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

# What real clients (nats.go, nats.py, async-nats, the nats CLI) put on the wire.
CONNECT = (
    b'CONNECT {"verbose":false,"pedantic":false,"tls_required":false,'
    b'"name":"nats-py","lang":"python3","version":"2.16.0","protocol":1,'
    b'"headers":true,"no_responders":true}\r\n'
)
HDR = b"NATS/1.0\r\nFoo: bar\r\nNats-Msg-Id: 1\r\nFoo: baz\r\n\r\n"
STATUS_HDR = b"NATS/1.0 503\r\n\r\n"

SEEDS = {
    "connect_ping": CONNECT + b"PING\r\n",
    "handshake": CONNECT + b"PING\r\nPONG\r\n+OK\r\n",
    "pub": b"PUB foo.bar 5\r\nhello\r\n",
    "pub_reply": b"PUB foo.bar _INBOX.abc.1 11\r\nhello world\r\n",
    "pub_empty": b"PUB foo 0\r\n\r\n",
    "pub_binary": b"PUB bin 6\r\n\x00\r\n\xff\n\r\r\n",
    "pub_lf_only": b"pub\tfoo   bar\t 3  \nabc\r\n",
    "hpub": b"HPUB foo %d %d\r\n%shi\r\n" % (len(HDR), len(HDR) + 2, HDR),
    "hpub_reply": b"HPUB foo _INBOX.x %d %d\r\n%s\r\n"
    % (len(HDR), len(HDR), HDR),
    "hpub_status": b"HPUB foo %d %d\r\n%s\r\n"
    % (len(STATUS_HDR), len(STATUS_HDR), STATUS_HDR),
    "sub": b"SUB foo.* 1\r\nSUB foo.> q 2\r\nSUB > 3\r\n",
    "unsub": b"UNSUB 1\r\nUNSUB 2 10\r\n",
    "request": CONNECT
    + b"SUB _INBOX.abc.* 1\r\nUNSUB 1 1\r\n"
    + b"PUB svc.echo _INBOX.abc.1 4\r\nping\r\nPING\r\n",
    "queue_group": b"SUB work grp 1\r\nSUB work grp 2\r\n"
    + b"".join(b"PUB work %d\r\n%d\r\n" % (len(str(i)), i) for i in range(5)),
    "info_err": b'INFO {"server_id":"x"}\r\n-ERR \'Unknown Protocol Operation\'\r\n',
    "mixed_case": b"pInG\r\nPoNg\r\ncOnNeCt{}\r\nsub a 1\r\nUnSub 1\r\n",
    "split_pub": b"PUB foo 10\r\n01234",
    "bad_trailer": b"PUB foo 2\r\nabXY",
    "bad_op": b"MSG foo 1 1\r\nx\r\n",
    "too_many_args": b"PUB a b c d e f\r\n",
    "long_line": b"SUB " + b"a" * 40 + b" 1\r\n",
    "big_payload": b"PUB foo 100\r\n" + b"x" * 100 + b"\r\n",
    "many_spaces": b"PUB" + b" " * 30 + b"foo 1\r\nx\r\n",
    "ping_junk": b"PING xyz\r\nPONGs\r\n",
}


def main():
    frame_dir = os.path.join(HERE, "corpus", "frame_parse")
    codec_dir = os.path.join(HERE, "corpus", "codec_decode")
    os.makedirs(frame_dir, exist_ok=True)
    os.makedirs(codec_dir, exist_ok=True)
    n = 0
    for name, stream in SEEDS.items():
        with open(os.path.join(frame_dir, name), "wb") as f:
            f.write(stream)
        # A few splits and both limit sets per seed.
        for flags in (0, 1):
            for split in (1, len(stream) // 2, max(len(stream) - 1, 0)):
                head = bytes([flags]) + struct.pack("<H", split)
                path = os.path.join(codec_dir, "%s_l%d_s%d" % (name, flags, split))
                with open(path, "wb") as f:
                    f.write(head + stream)
                n += 1
    print("wrote %d frame_parse and %d codec_decode seeds" % (len(SEEDS), n))


if __name__ == "__main__":
    main()
