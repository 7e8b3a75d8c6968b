// The tiles mode: a third-party C2SP tlog-tiles client. It fetches the
// namespace's signed checkpoint and its hash tiles over HTTP, and with
// golang.org/x/mod/sumdb/tlog's TileHashReader (which checks every tile it
// reads against the signed root) proves every leaf hash listed in LEAVES
// (one hex leaf hash per line, index order, recomputed by the caller from
// the Parquet rows) included in the tree, and, given OLD_CHECKPOINT (an
// earlier checkpoint note), the new tree consistent with the old one, using
// only the tiles.
//
// Prints {"size": S, "leaves": N, "tiles": T, "consistent_from": O}.
package main

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type httpTiles struct {
	base, ns, token string
	fetched         int
}

// tlog's paths carry the height (tile/8/L/N); C2SP's do not (tile/L/N).
func c2spPath(t tlog.Tile) string {
	return "tile/" + strings.TrimPrefix(t.Path(), fmt.Sprintf("tile/%d/", t.H))
}

func (r *httpTiles) get(path string) ([]byte, error) {
	req, err := http.NewRequest("GET", r.base+"/v1/logs/"+r.ns+"/"+path, nil)
	if err != nil {
		return nil, err
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return body, nil
}

func (r *httpTiles) Height() int { return 8 }

func (r *httpTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		b, err := r.get(c2spPath(t))
		if err != nil {
			return nil, err
		}
		out[i] = b
		r.fetched++
	}
	return out, nil
}

func (r *httpTiles) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func tilesMain(args []string) {
	if len(args) != 5 && len(args) != 6 {
		fmt.Fprintln(os.Stderr, "usage: tlogcheck tiles BASE_URL NS VERIFIER_KEY TOKEN LEAVES [OLD_CHECKPOINT]")
		os.Exit(2)
	}
	r := &httpTiles{base: strings.TrimRight(args[0], "/"), ns: args[1], token: args[3]}
	v, err := note.NewVerifier(args[2])
	if err != nil {
		fail("verifier key: %v", err)
	}
	text, err := r.get("checkpoint")
	if err != nil {
		fail("checkpoint: %v", err)
	}
	_, size, root := openCheckpoint("checkpoint", text, v)
	tree := tlog.Tree{N: size, Hash: root}
	hr := tlog.TileHashReader(tree, r)

	f, err := os.Open(args[4])
	if err != nil {
		fail("%v", err)
	}
	sc := bufio.NewScanner(f)
	var index int64
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		b, err := hex.DecodeString(line)
		if err != nil || len(b) != tlog.HashSize {
			fail("leaves line %d: not a hash", index+1)
		}
		var leaf tlog.Hash
		copy(leaf[:], b)
		// The leaf as the tiles hold it, checked against the signed root.
		got, err := hr.ReadHashes([]int64{tlog.StoredHashIndex(0, index)})
		if err != nil {
			fail("leaf %d from the tiles: %v", index, err)
		}
		if got[0] != leaf {
			fail("leaf %d: the tiles hold %x, the rows give %x", index, got[0], leaf)
		}
		proof, err := tlog.ProveRecord(size, index, hr)
		if err != nil {
			fail("inclusion proof of %d from the tiles: %v", index, err)
		}
		if err := tlog.CheckRecord(proof, size, root, index, leaf); err != nil {
			fail("inclusion of %d: %v", index, err)
		}
		index++
	}
	if index != size {
		fail("LEAVES lists %d leaf hashes, the checkpoint covers %d", index, size)
	}
	var from int64 = -1
	if len(args) == 6 {
		old, err := os.ReadFile(args[5])
		if err != nil {
			fail("%v", err)
		}
		_, osize, oroot := openCheckpoint("old checkpoint", old, v)
		proof, err := tlog.ProveTree(size, osize, hr)
		if err != nil {
			fail("consistency proof from the tiles: %v", err)
		}
		if err := tlog.CheckTree(proof, size, root, osize, oroot); err != nil {
			fail("consistency from %d to %d: %v", osize, size, err)
		}
		from = osize
	}
	out, _ := json.Marshal(map[string]interface{}{"size": size, "leaves": index, "tiles": r.fetched, "consistent_from": from})
	fmt.Println(string(out))
}
