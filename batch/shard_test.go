package batch

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShardsPartitionThePlan(t *testing.T) {
	for _, tc := range []struct{ vms, shards int }{{1, 1}, {7, 3}, {8, 4}, {3, 5}, {32, 7}} {
		t.Run(fmt.Sprintf("%d VMs in %d shards", tc.vms, tc.shards), func(t *testing.T) {
			var jobs []*Job
			for k := range tc.vms {
				jobs = append(jobs, &Job{Name: fmt.Sprint("vm", k)})
			}
			seen := map[*Job]int{}
			smallest, largest := tc.vms, 0
			for i := range tc.shards {
				s, err := ParseShard(fmt.Sprintf("%d/%d", i, tc.shards))
				require.NoError(t, err)
				share := s.Select(jobs)
				smallest, largest = min(smallest, len(share)), max(largest, len(share))
				for _, j := range share {
					seen[j]++
				}
			}
			assert.Len(t, seen, tc.vms, "every VM in some shard")
			for j, n := range seen {
				assert.Equal(t, 1, n, "%s in one shard only", j.Name)
			}
			assert.LessOrEqual(t, largest-smallest, 1, "shares differ by one VM at most")
		})
	}
}

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		err  bool
	}{
		{"0/1", Shard{0, 1}, false}, {"2/3", Shard{2, 3}, false},
		{"3/3", Shard{}, true}, {"-1/3", Shard{}, true}, {"1", Shard{}, true}, {"a/b", Shard{}, true}, {"0/0", Shard{}, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			s, err := ParseShard(tc.in)
			if tc.err {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, s)
		})
	}
}

func TestShardFromEnv(t *testing.T) {
	tests := []struct {
		name, index, shardsEnv string
		flag                   int
		want                   Shard
		ok                     bool
		err                    string
	}{
		{name: "not in a job", ok: false, want: All},
		{name: "index and --shards", index: "2", flag: 4, want: Shard{2, 4}, ok: true},
		{name: "index and VMCONV_SHARDS", index: "1", shardsEnv: "3", want: Shard{1, 3}, ok: true},
		{name: "flag wins", index: "1", shardsEnv: "3", flag: 2, want: Shard{1, 2}, ok: true},
		{name: "no count", index: "1", ok: true, err: "--shards N or VMCONV_SHARDS"},
		{name: "index too large", index: "5", flag: 3, ok: true, err: "JOB_COMPLETION_INDEX=5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.index != "" {
				t.Setenv("JOB_COMPLETION_INDEX", tc.index)
			}
			t.Setenv("VMCONV_SHARDS", tc.shardsEnv)
			s, ok, err := ShardFromEnv(tc.flag)
			assert.Equal(t, tc.ok, ok)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, s)
		})
	}
}
