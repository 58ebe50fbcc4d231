#!/usr/bin/env python3
"""Where a one-client put's time goes, from syscall tracepoints (no uprobes: on
this VM a uprobe costs tens of microseconds and distorts what it measures).

Record while `load --clients 1` runs against a local cluster, on the
replicas' and the load generator's pids (with `-a`, tracing `write` or
`futex` would trace perf's own writes too and distort the run):

    perf record -p PID,PID,PID,LOAD_PID -o /tmp/tl.data -e syscalls:sys_enter_sendmsg,\
syscalls:sys_exit_recvmmsg,syscalls:sys_enter_fdatasync,syscalls:sys_exit_fdatasync,\
syscalls:sys_exit_epoll_wait -- sleep 0.5

then name the threads (`ps -L -o tid,comm -p PID` for each replica; the
leader is the replica whose metrics say `synod_is_leader 1`):

    benches/tools/syscall-timeline.py /tmp/tl.data --leader TID --leader-log TID \
        --follower TID --follower TID

Each put starts at the client's sendmsg and ends at its next recvmmsg; the
script prints, per step, the median and mean over all puts in the recording.
See docs/PERFORMANCE.md, "One client".
"""
import argparse
import statistics
import subprocess


def events(path, client_comm):
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "comm,tid,time,event"],
        capture_output=True, text=True, check=True,
    ).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        comm, tid, t, ev = parts[0], parts[1], float(parts[2].rstrip(":")), parts[3]
        ev = ev.replace("syscalls:", "").rstrip(":")
        yield (t * 1e6, "client" if comm == client_comm else tid, ev)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data")
    ap.add_argument("--leader", required=True, help="the leader's synod-transport thread id")
    ap.add_argument("--leader-log", required=True, help="the leader's synod-log thread id")
    ap.add_argument("--follower", action="append", required=True, help="a follower's synod-transport thread id")
    ap.add_argument("--client-comm", default="load")
    a = ap.parse_args()
    ev = list(events(a.data, a.client_comm))
    starts = [i for i, (_, who, e) in enumerate(ev) if who == "client" and e == "sys_enter_sendmsg"]
    rows = []
    for lo, hi in zip(starts, starts[1:]):
        seg, t0 = ev[lo:hi], ev[lo][0]

        def first(who, e, after=t0):
            return next((t for t, w, x in seg if t >= after and w == who and x == e), None)

        def last(who, e, before):
            return max((t for t, w, x in seg if t <= before and w == who and x == e), default=None)

        woke = first(a.leader, "sys_exit_epoll_wait")
        sent1 = woke and first(a.leader, "sys_enter_sendmsg", woke)
        sent2 = sent1 and first(a.leader, "sys_enter_sendmsg", sent1 + 0.001)
        answered = first("client", "sys_exit_recvmmsg", t0 + 0.001)
        if not (sent2 and answered):
            continue
        reply = last(a.leader, "sys_enter_sendmsg", answered)
        woke2 = last(a.leader, "sys_exit_epoll_wait", reply)
        r = {
            "client -> leader wakes": woke - t0,
            "leader: wake -> 1st Accept sent": sent1 - woke,
            "leader: 1st -> 2nd Accept sent": sent2 - sent1,
            "leader: last wake -> reply sent": reply - woke2,
            "reply sent -> client has it": answered - reply,
            "put (client syscall to syscall)": answered - t0,
        }
        for n, f in enumerate(a.follower, 1):
            fw = first(f, "sys_exit_epoll_wait", sent1)
            fe = fw and first(f, "sys_enter_fdatasync", fw)
            fx = fe and first(f, "sys_exit_fdatasync", fe)
            fs = fx and first(f, "sys_enter_sendmsg", fx)
            if fs and fs < answered:  # the follower wrote inline, in this put
                r[f"follower {n}: woken after 1st Accept"] = fw - sent1
                r[f"follower {n}: wake -> fdatasync"] = fe - fw
                r[f"follower {n}: fdatasync"] = fx - fe
                r[f"follower {n}: fdatasync -> Accepted sent"] = fs - fx
                r[f"follower {n}: Accepted sent, from put start"] = fs - t0
        acked = [r[k] + t0 for k in r if k.endswith("Accepted sent, from put start")]
        if acked:
            woke3 = first(a.leader, "sys_exit_epoll_wait", min(acked))
            if woke3 and woke3 <= reply:
                r["first Accepted sent -> leader wakes"] = woke3 - min(acked)
        lf = first(a.leader_log, "sys_enter_fdatasync")
        lx = lf and first(a.leader_log, "sys_exit_fdatasync", lf)
        if lx:
            r["leader log: fdatasync starts"] = lf - t0
            r["leader log: fdatasync"] = lx - lf
        rows.append(r)
    print(f"{len(rows)} puts")
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for k in keys:
        v = [r[k] for r in rows if k in r]
        print(f"{k:42s} n={len(v):5d}  p50 {statistics.median(v):6.0f} us  mean {statistics.mean(v):6.0f} us")


if __name__ == "__main__":
    main()
