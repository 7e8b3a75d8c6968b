#!/usr/bin/env python3
"""An independent checker of tracevault's output, written from the specs only
(C2SP signed-note and tlog-checkpoint, RFC 6962/9162 proofs, SPEC section 4
field digests and committed records, Parquet via pyarrow and DuckDB). It shares
no code with the Rust implementation. Input: one JSON job on stdin. Output: one
JSON result on stdout; any failed check raises and exits non-zero.
"""
import base64
import hashlib
import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64d(s):
    return base64.b64decode(s, validate=True)


def parse_vkey(vkey):
    name, keyid_hex, key_b64 = vkey.split("+", 2)
    raw = b64d(key_b64)
    assert raw[0] == 1 and len(raw) == 33, "not an Ed25519 verifier key"
    expect = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    assert expect.hex() == keyid_hex, "verifier key id mismatch"
    return name, expect, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(text, vkey):
    name, keyid, pub = parse_vkey(vkey)
    i = text.rindex("\n\n")
    body, sigs = text[: i + 1], text[i + 2 :]
    assert sigs.endswith("\n")
    ok = False
    for line in sigs[:-1].split("\n"):
        assert line.startswith("\u2014 "), "bad signature line"
        sname, sig_b64 = line[2:].split(" ")
        sig = b64d(sig_b64)
        if sname == name and sig[:4] == keyid:
            pub.verify(sig[4:], body.encode())  # raises InvalidSignature
            ok = True
    assert ok, "no signature by the verifier key"
    lines = body.split("\n")
    origin, size, root = lines[0], int(lines[1]), b64d(lines[2])
    assert origin == name, "origin differs from key name"
    assert str(size) == lines[1]
    assert len(root) == 32
    return origin, size, root


def node(l, r):
    return hashlib.sha256(b"\x01" + l + r).digest()


def verify_inclusion(index, size, leaf, proof, root):
    # RFC 9162 section 2.1.3.2
    assert index < size
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise AssertionError("proof too long")
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof too short"
    assert r == root, "inclusion proof does not reach the root"


def verify_consistency(m, n, proof, old_root, new_root):
    # RFC 9162 section 2.1.4.2
    if m == n:
        assert not proof and old_root == new_root
        return
    assert 0 < m < n
    if m & (m - 1) == 0:  # power of two
        proof = [old_root] + list(proof)
    fn, sn = m - 1, n - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        assert sn != 0
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while True:
                    fn >>= 1
                    sn >>= 1
                    if fn & 1 or fn == 0:
                        break
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    assert sn == 0
    assert fr == old_root, "consistency: old root mismatch"
    assert sr == new_root, "consistency: new root mismatch"


def parse_tlog_proof(text):
    head, _, note = text.partition("\n\n")
    lines = head.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    rest = lines[1:]
    if rest and rest[0].startswith("extra "):
        rest = rest[1:]
    assert rest[0].startswith("index ")
    return int(rest[0][6:]), [b64d(h) for h in rest[1:]], note


def field_digest(name, salt, value):
    return hashlib.sha256(b"tracevault/field/v1\x00" + name.encode() + b"\x00" + salt + value).digest()


def ts(v):
    # pyarrow gives datetime with tz; SPEC: six fractional digits and Z
    return v.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_segments(paths, codec):
    import pyarrow.parquet as pq
    import duckdb

    leaves = {}
    chain = bytes(32)
    total = 0
    for path in paths:
        f = pq.ParquetFile(path)
        meta = f.metadata.metadata or {}
        assert b"tracevault.segment.header" in meta, "segment header missing in footer"
        header = json.loads(meta[b"tracevault.segment.header"])
        assert f.metadata.row_group(0).column(0).compression == codec, f.metadata.row_group(0).column(0).compression
        t = f.read().to_pylist()
        prev_idx = None
        for row in t:
            salt = row["salt"]
            rec = {"v": 1, "ns": row["ns"], "index": row["idx"], "session_id": row["session_id"],
                   "session_seq": row["session_seq"], "kind": row["kind"],
                   "received_at": ts(row["received_at"]), "ingested_by": row["ingested_by"]}
            if row["ts"] is not None:
                rec["ts"] = ts(row["ts"])
            for k in ["event_id", "trace_id", "span_id", "parent_span_id", "name", "actor", "model"]:
                if row[k] is not None:
                    rec[k] = row[k]
            if row["content"] is not None:
                rec["content_type"] = row["content_type"]
                d = field_digest("content", salt, row["content"].encode())
                assert d == row["content_digest"], "content digest mismatch"
                rec["content_digest"] = d.hex()
            if row["attributes"] is not None:
                d = field_digest("attributes", salt, row["attributes"].encode())
                assert d == row["attributes_digest"], "attributes digest mismatch"
                rec["attributes_digest"] = d.hex()
            jcs = json.dumps(rec, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
            leaf = hashlib.sha256(b"\x00" + jcs).digest()
            assert leaf == row["leaf_hash"], f"leaf hash mismatch at {row['idx']}"
            chain = hashlib.sha256(chain + leaf).digest()
            assert chain == row["chain_hash"], f"chain mismatch at {row['idx']}"
            assert prev_idx is None or row["idx"] == prev_idx + 1
            prev_idx = row["idx"]
            leaves[row["idx"]] = leaf.hex()
            total += 1
        assert header["chain_out"] == chain.hex()
    con = duckdb.connect()
    files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
    n, mn, mx = con.execute(f"select count(*), min(idx), max(idx) from read_parquet([{files}])").fetchone()
    return leaves, total, n, mn, mx


def main():
    job = json.load(sys.stdin)
    out = {}
    origin, size, root = open_note(job["checkpoint"], job["vkey"])
    out["size"] = size
    for inc in job.get("inclusion", []):
        verify_inclusion(inc["index"], inc["size"], bytes.fromhex(inc["leaf_hash"]),
                         [b64d(h) for h in inc["hashes"]], root)
    out["inclusion_checked"] = len(job.get("inclusion", []))
    for c in job.get("consistency", []):
        _, old_size, old_root = open_note(c["old_note"], job["vkey"])
        assert old_size == c["from"] and size == c["to"]
        verify_consistency(c["from"], c["to"], [b64d(h) for h in c["hashes"]], old_root, root)
    out["consistency_checked"] = len(job.get("consistency", []))
    for i, text in enumerate(job.get("tlog_proofs", [])):
        index, proof, note = parse_tlog_proof(text)
        _, psize, proot = open_note(note, job["vkey"])
        leaf = bytes.fromhex(job["tlog_leaves"][i])
        verify_inclusion(index, psize, leaf, proof, proot)
    out["tlog_checked"] = len(job.get("tlog_proofs", []))
    if job.get("segments"):
        leaves, total, n, mn, mx = check_segments(job["segments"], job.get("segment_codec", "ZSTD"))
        for r in job.get("receipts", []):
            assert leaves.get(r["index"]) == r["leaf_hash"], f"receipt {r['index']} not in segments"
        out.update({"rows": total, "duckdb_rows": n, "duckdb_min": mn, "duckdb_max": mx})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
