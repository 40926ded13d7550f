// Command verifier checks a served transparency log with the Go checksum database's own
// packages (golang.org/x/mod/sumdb/note and .../tlog), independently of our Python code.
//
// It fetches <url>/checkpoint, checks its signature with the given verifier key, reads the
// hash tiles and entry bundles over HTTP (C2SP tlog-tiles paths), recomputes the tree hash,
// and checks an inclusion proof for every entry and a consistency proof from every smaller
// size. With -previous, it also checks that an older signed checkpoint (a file) verifies
// with the same key and that the served tree extends it. It counts the entries that are
// JSON objects by their "event" field. It prints a JSON summary, or an error and exit
// status 1.
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type tiles struct{ base string }

func (t tiles) Height() int { return 8 }

// c2spPath turns Go's "tile/8/L/N" (height in the path) into C2SP's "tile/L/N".
func c2spPath(tile tlog.Tile) string {
	path := tile.Path()
	return "tile/" + strings.TrimPrefix(path, "tile/8/")
}

func (t tiles) ReadTiles(list []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(list))
	for i, tile := range list {
		data, err := get(t.base + "/" + c2spPath(tile))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (t tiles) SaveTiles([]tlog.Tile, [][]byte) {}

func get(url string) ([]byte, error) {
	response, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer response.Body.Close()
	if response.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, response.Status)
	}
	return io.ReadAll(response.Body)
}

func entries(base string, size int64) ([][]byte, error) {
	var all [][]byte
	for n := int64(0); n*256 < size; n++ {
		width := size - n*256
		if width > 256 {
			width = 256
		}
		tile := tlog.Tile{H: 8, L: -1, N: n, W: int(width)}
		data, err := get(base + "/" + strings.Replace(c2spPath(tile), "tile/data/", "tile/entries/", 1))
		if err != nil {
			return nil, err
		}
		for len(data) > 0 {
			if len(data) < 2 {
				return nil, fmt.Errorf("entry bundle %d is truncated", n)
			}
			length := int(data[0])<<8 | int(data[1])
			if len(data) < 2+length {
				return nil, fmt.Errorf("entry bundle %d is truncated", n)
			}
			all = append(all, data[2:2+length])
			data = data[2+length:]
		}
	}
	if int64(len(all)) < size {
		return nil, fmt.Errorf("the entry bundles hold %d entries, not %d", len(all), size)
	}
	return all[:size], nil
}

// openCheckpoint verifies a signed checkpoint and returns its size and root hash.
func openCheckpoint(signed []byte, verifier note.Verifier) (string, int64, tlog.Hash, error) {
	var root tlog.Hash
	opened, err := note.Open(signed, note.VerifierList(verifier))
	if err != nil {
		return "", 0, root, fmt.Errorf("checkpoint signature: %v", err)
	}
	lines := strings.Split(opened.Text, "\n")
	if len(lines) < 4 {
		return "", 0, root, fmt.Errorf("checkpoint too short")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		return "", 0, root, fmt.Errorf("checkpoint size: %v", err)
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != tlog.HashSize {
		return "", 0, root, fmt.Errorf("checkpoint root hash")
	}
	copy(root[:], rootBytes)
	return opened.Sigs[0].Name, size, root, nil
}

// events counts the entries that are JSON objects by their "event" field.
func events(records [][]byte) map[string]int {
	counts := map[string]int{}
	for _, record := range records {
		var leaf map[string]any
		if json.Unmarshal(record, &leaf) == nil {
			if name, ok := leaf["event"].(string); ok {
				counts[name]++
			}
		}
	}
	return counts
}

func run(url, vkey, previous string) (map[string]any, error) {
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %v", err)
	}
	signed, err := get(url + "/checkpoint")
	if err != nil {
		return nil, err
	}
	signer, size, root, err := openCheckpoint(signed, verifier)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(string(signed), "\n")
	reader := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, tiles{url})
	computed, err := tlog.TreeHash(size, reader)
	if err != nil {
		return nil, fmt.Errorf("tree hash: %v", err)
	}
	if computed != root {
		return nil, fmt.Errorf("the tiles give root %v, the checkpoint says %v", computed, root)
	}
	records, err := entries(url, size)
	if err != nil {
		return nil, err
	}
	for i, record := range records {
		proof, err := tlog.ProveRecord(size, int64(i), reader)
		if err != nil {
			return nil, fmt.Errorf("inclusion proof of %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, size, root, int64(i), tlog.RecordHash(record)); err != nil {
			return nil, fmt.Errorf("entry %d: %v", i, err)
		}
	}
	roots := map[string]string{}
	for old := int64(1); old < size; old++ {
		oldHash, err := tlog.TreeHash(old, reader)
		if err != nil {
			return nil, fmt.Errorf("tree hash of %d: %v", old, err)
		}
		proof, err := tlog.ProveTree(size, old, reader)
		if err != nil {
			return nil, fmt.Errorf("consistency proof from %d: %v", old, err)
		}
		if err := tlog.CheckTree(proof, size, root, old, oldHash); err != nil {
			return nil, fmt.Errorf("consistency from %d: %v", old, err)
		}
		roots[strconv.FormatInt(old, 10)] = base64.StdEncoding.EncodeToString(oldHash[:])
	}
	summary := map[string]any{
		"origin": lines[0], "size": size, "root": lines[2], "signer": signer,
		"entries_checked": len(records), "old_roots": roots, "events": events(records),
	}
	if previous != "" {
		older, err := os.ReadFile(previous)
		if err != nil {
			return nil, err
		}
		_, oldSize, oldRoot, err := openCheckpoint(older, verifier)
		if err != nil {
			return nil, fmt.Errorf("previous %v", err)
		}
		if oldSize > size {
			return nil, fmt.Errorf("the tree shrank from %d to %d", oldSize, size)
		}
		proof, err := tlog.ProveTree(size, oldSize, reader)
		if err != nil {
			return nil, fmt.Errorf("consistency proof from the previous checkpoint: %v", err)
		}
		if err := tlog.CheckTree(proof, size, root, oldSize, oldRoot); err != nil {
			return nil, fmt.Errorf("the served tree does not extend the previous one: %v", err)
		}
		summary["previous_size"] = oldSize
	}
	return summary, nil
}

func main() {
	url := flag.String("url", "", "the log's base URL (serving checkpoint and tile/)")
	vkey := flag.String("vkey", "", "the log's verifier key")
	previous := flag.String("previous", "", "a file holding an older signed checkpoint")
	flag.Parse()
	summary, err := run(strings.TrimRight(*url, "/"), *vkey, *previous)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verifier:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(summary)
}
