#!/usr/bin/env python3
"""Writes the resolver-like query mix of benches/dns/run.sh for `dnsperf -B`
(each query a raw DNS message after a 2-byte length).

Per 100 queries, shuffled with a fixed seed: 55 ask the steered name with
EDNS Client Subnet from an IPv4 /24 (four address ranges: two regions the
servers map, two they do not), 15 with an IPv6 /56 from the same regions,
5 with EDNS and no ECS, 15 ask a static name that has two addresses (ECS
set), 10 ask names that do not exist (ECS set). Every query carries EDNS
(UDP size 1232), as resolvers send. With --do, one query in five (of every
kind) also sets the DNSSEC OK bit.

usage: mix.py OUT [--do] [--count N]
"""
import random
import struct
import sys


def wire_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ecs_option(family, address, prefix):
    count = (prefix + 7) // 8
    data = struct.pack(">HBB", family, prefix, 0) + address[:count]
    return struct.pack(">HH", 8, len(data)) + data


def query(name, ecs=None, do=False):
    header = struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 1)
    question = wire_name(name) + struct.pack(">HH", 1, 1)
    rdata = ecs or b""
    opt = b"\0" + struct.pack(">HHIH", 41, 1232, 0x8000 if do else 0, len(rdata)) + rdata
    return header + question + opt


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    out = args[0]
    do_share = 5 if "--do" in args else 0
    count = int(args[args.index("--count") + 1]) if "--count" in args else 100_000
    rng = random.Random(7)
    v4_ranges = [10, 10, 198, 203]  # 10.1/16 eu, 10.2/16 us, then unmapped
    v4_second = [1, 2, 51, 0]
    v6_regions = [1, 2]
    kinds = ["gslb4"] * 55 + ["gslb6"] * 15 + ["plain"] * 5 + ["static"] * 15 + ["nx"] * 10
    with open(out, "wb") as f:
        for i in range(count):
            kind = rng.choice(kinds)
            r = rng.randrange(4)
            v4 = bytes([v4_ranges[r], v4_second[r], rng.randrange(256), 0])
            ecs4 = ecs_option(1, v4, 24)
            do = do_share > 0 and rng.randrange(do_share) == 0
            if kind == "gslb4":
                msg = query("app.bench.test", ecs4, do)
            elif kind == "gslb6":
                v6 = bytes([0x20, 0x01, 0x0D, 0xB8, 0, rng.choice(v6_regions), rng.randrange(256)]) + bytes(9)
                msg = query("app.bench.test", ecs_option(2, v6, 56), do)
            elif kind == "plain":
                msg = query("app.bench.test", None, do)
            elif kind == "static":
                msg = query("www.bench.test", ecs4, do)
            else:
                msg = query(f"nx{rng.randrange(1_000_000)}.bench.test", ecs4, do)
            f.write(struct.pack(">H", len(msg)) + msg)


if __name__ == "__main__":
    main()
