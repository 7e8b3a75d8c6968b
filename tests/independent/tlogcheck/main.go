// Command tlogcheck checks an export bundle's checkpoint and inclusion
// proofs with Go's golang.org/x/mod/sumdb/note and sumdb/tlog: an
// implementation independent of tracevault's own (tests/verify_bundle.rs runs
// it). It reads only the tar file and the verifier key.
//
// Usage: tlogcheck BUNDLE.tar VERIFIER_KEY
//        tlogcheck tiles BASE_URL NS VERIFIER_KEY TOKEN LEAVES [OLD_CHECKPOINT]
//
// The tiles mode is in tiles.go.
//
// Prints {"checked": N, "size": S, "origin": O, "history": H} and exits 0
// when the checkpoint's signature verifies and every proofs.jsonl line's leaf
// hash is included in its tree, and the same holds for audit_checkpoint
// (signed by the same key under the name <vault origin>/_audit) and every
// approvals.jsonl line; prints the first failure and exits 1.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type proofLine struct {
	Index    int64    `json:"index"`
	LeafHash string   `json:"leaf_hash"`
	Proof    []string `json:"proof"`
}

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "tlogcheck: "+format+"\n", a...)
	os.Exit(1)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "tiles" {
		tilesMain(os.Args[2:])
		return
	}
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: tlogcheck BUNDLE.tar VERIFIER_KEY")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	members := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("reading the tar: %v", err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			fail("reading %s: %v", h.Name, err)
		}
		members[h.Name] = b
	}

	// The checkpoint: a C2SP signed note by the log key.
	v, err := note.NewVerifier(os.Args[2])
	if err != nil {
		fail("verifier key: %v", err)
	}
	origin, size, root := openCheckpoint("checkpoint", members["checkpoint"], v)
	checked := checkProofs("proofs.jsonl", members["proofs.jsonl"], size, root)

	// The history: the same key, under the _audit log's name.
	parts := strings.SplitN(os.Args[2], "+", 3)
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 33 || raw[0] != 1 {
		fail("verifier key is not an Ed25519 key")
	}
	auditName := origin[:strings.LastIndex(origin, "/")] + "/_audit"
	auditKey, err := note.NewEd25519VerifierKey(auditName, ed25519.PublicKey(raw[1:]))
	if err != nil {
		fail("audit key: %v", err)
	}
	av, err := note.NewVerifier(auditKey)
	if err != nil {
		fail("audit key: %v", err)
	}
	_, asize, aroot := openCheckpoint("audit_checkpoint", members["audit_checkpoint"], av)
	history := checkProofs("approvals.jsonl", members["approvals.jsonl"], asize, aroot)

	out, _ := json.Marshal(map[string]interface{}{"checked": checked, "size": size, "origin": origin, "history": history})
	fmt.Println(string(out))
}

// openCheckpoint verifies a C2SP checkpoint note and returns its origin,
// tree size and root hash.
func openCheckpoint(member string, text []byte, v note.Verifier) (string, int64, tlog.Hash) {
	n, err := note.Open(text, note.VerifierList(v))
	if err != nil {
		fail("%s signature: %v", member, err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("%s body has %d lines", member, len(lines))
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("%s size: %v", member, err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		fail("%s root: %v", member, err)
	}
	var root tlog.Hash
	copy(root[:], rootBytes)
	if lines[0] != v.Name() {
		fail("%s origin %q is not the key's name %q", member, lines[0], v.Name())
	}
	return lines[0], size, root
}

// checkProofs checks every JSON line's inclusion proof of its leaf hash
// against the tree (size, root) and returns how many it checked.
func checkProofs(member string, data []byte, size int64, root tlog.Hash) int {
	r := bufio.NewReader(bytes.NewReader(data))
	checked := 0
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var p proofLine
			if e := json.Unmarshal(line, &p); e != nil {
				fail("%s line %d: %v", member, checked+1, e)
			}
			lh, e := hex.DecodeString(p.LeafHash)
			if e != nil || len(lh) != tlog.HashSize {
				fail("%s index %d: bad leaf hash", member, p.Index)
			}
			var leaf tlog.Hash
			copy(leaf[:], lh)
			proof := make(tlog.RecordProof, len(p.Proof))
			for i, s := range p.Proof {
				b, e := base64.StdEncoding.DecodeString(s)
				if e != nil || len(b) != tlog.HashSize {
					fail("%s index %d: bad proof hash %d", member, p.Index, i)
				}
				copy(proof[i][:], b)
			}
			if e := tlog.CheckRecord(proof, size, root, p.Index, leaf); e != nil {
				fail("%s index %d: inclusion proof: %v", member, p.Index, e)
			}
			checked++
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("reading %s: %v", member, err)
		}
	}
	return checked
}
