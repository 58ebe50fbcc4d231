#!/usr/bin/env python3
"""The floor of a one-client replicated put on this machine, without synod.

A bare skeleton of the message pattern synod's put follows, with none of
its protocol, encryption or state: a client sends a request over UDP on
loopback to a "leader", which forwards it to two "followers" and writes and
fdatasyncs its own log on a thread; each follower writes 280 bytes in a
preallocated file and fdatasyncs before it answers; the leader answers the
client once any two of the three writes are done (a majority). Closed loop,
one request at a time, like `load --clients 1`.

    benches/tools/put-skeleton.py [SECONDS] [DIR]

starts the three servers, runs the client for SECONDS (default 5), prints
the p50 and p99, and removes its files (three 32 MiB logs in DIR, default
$CARGO_TARGET_DIR or target/). Ports 7601-7604. See docs/PERFORMANCE.md,
"One client".
"""
import os
import socket
import subprocess
import sys
import threading
import time

PORTS = {"leader": 7601, "f1": 7602, "f2": 7603, "client": 7604}
RECORD = b"r" * 280


def bind(role):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", PORTS[role]))
    return s


def log(directory, role):
    path = os.path.join(directory, f"put-skeleton-{role}.wal")
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    os.ftruncate(fd, 0)
    os.write(fd, b"\0" * (32 << 20))  # preallocated with zeros, as synod's log is
    os.fsync(fd)
    return fd, path


def follower(role, directory):
    s = bind(role)
    fd, path = log(directory, role)
    pos = 0
    while True:
        m, _ = s.recvfrom(2048)
        if m == b"stop":
            break
        os.pwrite(fd, RECORD, pos)
        pos += len(RECORD)
        os.fdatasync(fd)
        s.sendto(m[:8] + role.encode(), ("127.0.0.1", PORTS["leader"]))
    os.unlink(path)


def leader(directory):
    s = bind("leader")
    fd, path = log(directory, "leader")
    pos = [0]
    lock = threading.Lock()

    def persist(seq):
        with lock:
            os.pwrite(fd, RECORD, pos[0])
            pos[0] += len(RECORD)
            os.fdatasync(fd)
        s.sendto(seq + b"self", ("127.0.0.1", PORTS["leader"]))

    votes = {}
    while True:
        m, addr = s.recvfrom(2048)
        if m == b"stop":
            break
        if addr[1] == PORTS["client"]:
            seq = m[:8]
            votes[seq] = set()
            s.sendto(seq + m, ("127.0.0.1", PORTS["f1"]))
            s.sendto(seq + m, ("127.0.0.1", PORTS["f2"]))
            threading.Thread(target=persist, args=(seq,)).start()
        else:
            seq, who = m[:8], m[8:]
            if seq in votes:
                votes[seq].add(who)
                if len(votes[seq]) >= 2:
                    del votes[seq]
                    s.sendto(seq, ("127.0.0.1", PORTS["client"]))
    os.unlink(path)


def client(seconds):
    s = bind("client")
    lat = []
    end = time.time() + seconds
    i = 0
    while time.time() < end:
        i += 1
        t = time.perf_counter()
        s.sendto(i.to_bytes(8, "big") + b"x" * 120, ("127.0.0.1", PORTS["leader"]))
        s.recvfrom(2048)
        lat.append(time.perf_counter() - t)
    for role in ("leader", "f1", "f2"):
        s.sendto(b"stop", ("127.0.0.1", PORTS[role]))
    lat.sort()
    print(
        f"put-skeleton: {len(lat)} puts in {seconds:g} s, "
        f"p50 {lat[len(lat) // 2] * 1e3:.2f} ms, p99 {lat[int(len(lat) * 0.99)] * 1e3:.2f} ms"
    )


def main():
    if len(sys.argv) > 1 and sys.argv[1] in ("leader", "f1", "f2"):
        role, directory = sys.argv[1], sys.argv[2]
        leader(directory) if role == "leader" else follower(role, directory)
        return
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    default = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "target")
    directory = sys.argv[2] if len(sys.argv) > 2 else default
    os.makedirs(directory, exist_ok=True)
    servers = [subprocess.Popen([sys.executable, __file__, role, directory]) for role in ("leader", "f1", "f2")]
    time.sleep(1.5)  # each server preallocates its log first
    try:
        client(seconds)
    finally:
        for p in servers:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
