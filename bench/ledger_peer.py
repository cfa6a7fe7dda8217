#!/usr/bin/env python3
"""Peer for `oml ledger bench`: the same appends done with Python's sqlite3 module directly.

Same schema, same pragmas (WAL, synchronous=FULL or OFF), same transaction per batch (BEGIN IMMEDIATE, read the head,
insert the batch with SHA-256 chained hashes, COMMIT), same ~300-byte JSON payloads. It shows what the raw engine
costs on this disk, so the difference to `oml ledger bench` is the .NET ledger's own overhead.

    python3 bench/ledger_peer.py --events 2000 --batch 1 [--nosync]
"""
import argparse, hashlib, os, sqlite3, struct, tempfile, time

def field(b): return struct.pack(">I", len(b)) + b

def event_hash(seq, prev, typ, ms, payload):
    return hashlib.sha256(field(b"oml/ledger-event/v1") + field(struct.pack(">q", seq)) + field(prev)
                          + field(typ.encode()) + field(struct.pack(">q", ms)) + field(payload)).digest()

def payload(seq, size):
    head = '{"seq":%d,"pad":"' % seq
    return (head + "x" * max(0, size - len(head) - 2) + '"}').encode()

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--payload-bytes", type=int, default=300)
    ap.add_argument("--nosync", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as d:
        db = sqlite3.connect(os.path.join(d, "peer.db"), isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=" + ("OFF" if a.nosync else "FULL"))
        db.execute("CREATE TABLE events(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, payload BLOB NOT NULL, "
                   "ts INTEGER NOT NULL, prev BLOB NOT NULL, hash BLOB NOT NULL)")
        t0 = time.perf_counter()
        done = 0
        while done < a.events:
            k = min(a.batch, a.events - done)
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT seq, hash, ts FROM events ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (0, bytes(32)) if row is None else (row[0] + 1, row[1])
            ms = int(time.time() * 1000)
            for i in range(k):
                p = payload(seq, a.payload_bytes)
                h = event_hash(seq, prev, "bench/event", ms, p)
                db.execute("INSERT INTO events VALUES (?,?,?,?,?,?)", (seq, "bench/event", p, ms, prev, h))
                prev, seq = h, seq + 1
            db.execute("COMMIT")
            done += k
        dt = time.perf_counter() - t0
        print(f"python sqlite3 {sqlite3.sqlite_version} synchronous={'OFF' if a.nosync else 'FULL'}: "
              f"{a.events} events, batch {a.batch}: {a.events / dt:.0f} events/s")

if __name__ == "__main__":
    main()
