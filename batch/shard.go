package batch

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Shard is this process's share of a plan: VM k (in plan order) belongs to
// shard k mod N. The plan's order is the same on every shard, so the shares
// are disjoint and cover the plan, and they differ in size by one VM at
// most (a hash of the names can leave one shard with twice the work of
// another in a small fleet). A plan reordered between runs moves VMs
// between shards; the journal, shared by all shards, still skips what is done.
type Shard struct{ Index, Count int }

// All is the whole plan as one shard.
var All = Shard{0, 1}

// ParseShard reads "I/N".
func ParseShard(s string) (Shard, error) {
	a, b, ok := strings.Cut(s, "/")
	i, err1 := strconv.Atoi(a)
	n, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("--shard: want I/N with 0 <= I < N, got %q", s)
	}
	return Shard{i, n}, nil
}

// ShardFromEnv takes the index from JOB_COMPLETION_INDEX (a Kubernetes
// Indexed Job) and the count from count, else VMCONV_SHARDS. ok is false
// when JOB_COMPLETION_INDEX is not set or empty.
func ShardFromEnv(count int) (s Shard, ok bool, err error) {
	idx := os.Getenv("JOB_COMPLETION_INDEX")
	if idx == "" {
		return All, false, nil
	}
	if count == 0 {
		if v := os.Getenv("VMCONV_SHARDS"); v != "" {
			if count, err = strconv.Atoi(v); err != nil {
				return Shard{}, true, fmt.Errorf("VMCONV_SHARDS: want a number, got %q", v)
			}
		}
	}
	if count == 0 {
		return Shard{}, true, fmt.Errorf("JOB_COMPLETION_INDEX is set: give the number of shards with --shards N or VMCONV_SHARDS")
	}
	s, err = ParseShard(idx + "/" + strconv.Itoa(count))
	if err != nil {
		return Shard{}, true, fmt.Errorf("JOB_COMPLETION_INDEX=%s with %d shards: %w", idx, count, err)
	}
	return s, true, nil
}

// Select returns the jobs of this shard.
func (s Shard) Select(jobs []*Job) []*Job {
	var out []*Job
	for k, j := range jobs {
		if k%s.Count == s.Index {
			out = append(out, j)
		}
	}
	return out
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }
