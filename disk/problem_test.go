package disk

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProblem(t *testing.T) {
	for _, tc := range []struct {
		p    Problem
		text string
	}{
		{Problemf("a.vmdk", 0x10200, "grain table %d: %s", 3, "past the end"), "a.vmdk at 0x10200: grain table 3: past the end"},
		{Problemf("b.vhd", 0, "footer"), "b.vhd at 0x0: footer"},
		{Problem{File: "c.ova", Offset: -1, What: "manifest mismatch"}, "c.ova: manifest mismatch"},
	} {
		assert.Equal(t, tc.text, tc.p.String())
		b, err := json.Marshal(tc.p)
		require.NoError(t, err)
		var back Problem
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, tc.p, back)
		assert.Contains(t, string(b), `"offset":`)
	}
}
