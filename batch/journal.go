package batch

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Journal states.
const (
	Started   = "started"
	Converted = "converted"
	Verified  = "verified"
	Done      = "done"
	Failed    = "failed"
	Cancelled = "cancelled"
	Skipped   = "skipped" // report only: done before, unchanged
)

// JournalDir is the journal's directory inside an output directory.
const JournalDir = ".vmconv-batch"

// JournalRecord is one state change of one VM.
type JournalRecord struct {
	Time     time.Time `json:"time"`
	Name     string    `json:"name"`
	Output   string    `json:"output"`
	State    string    `json:"state"`
	Identity string    `json:"identity"`
	Options  string    `json:"options"`
	// Disks are the output's digests, from "converted" on: a rerun that
	// skips the VM reports them again.
	Disks []DiskDigest `json:"disks,omitempty"`
	Error string       `json:"error,omitempty"`
}

// Journal is an append-only log of state changes beside the outputs
// (OUT/.vmconv-batch/journal.jsonl). Each record is one write of one line
// to a file opened O_APPEND, then fsynced: shards sharing an output
// directory append to the same file without tearing each other's lines,
// and a record that returned is on disk. A line cut off by a crash is
// ignored when read.
type Journal struct {
	mu   sync.Mutex
	f    *os.File
	last map[string]JournalRecord // by output, relative to the directory
}

// OpenJournal opens (creating it) the journal of an output directory and
// reads what it holds.
func OpenJournal(outDir string) (*Journal, error) {
	dir := filepath.Join(outDir, JournalDir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	path := filepath.Join(dir, "journal.jsonl")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{f: f, last: map[string]JournalRecord{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var r JournalRecord
		if json.Unmarshal(sc.Bytes(), &r) != nil || r.Output == "" {
			continue // a line torn by a crash
		}
		j.last[r.Output] = r
	}
	if err := sc.Err(); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return j, nil
}

// Last is the latest record of an output, if any.
func (j *Journal) Last(output string) (JournalRecord, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	r, ok := j.last[output]
	return r, ok
}

// Append writes a record and syncs it to disk.
func (j *Journal) Append(r JournalRecord) error {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.last[r.Output] = r
	return nil
}

// Close closes the journal file.
func (j *Journal) Close() error { return j.f.Close() }

// isTemp reports whether a file name is one of disk.Output's temporary names.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-")
}

// cleanTemps removes what an interrupted run of this job left: temporary
// files and directories of its output. Only this job's names are touched,
// so shards running beside it in the same directory are safe.
func cleanTemps(j *Job) error {
	pattern := filepath.Join(filepath.Dir(j.Artifact), "."+filepath.Base(j.Artifact)+".tmp-*")
	globs := []string{pattern}
	if j.Artifact != j.Output {
		globs = append(globs, filepath.Join(j.Artifact, ".*.tmp-*"))
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(g)
		for _, m := range matches {
			if err := os.RemoveAll(m); err != nil {
				return fmt.Errorf("remove stale %s: %w", m, err)
			}
		}
	}
	return nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
