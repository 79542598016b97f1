package qemu

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNICArgs(t *testing.T) {
	args, err := nicArgs([]string{"00:50:56:3f:a2:23", "52:54:00:12:34:56"})
	require.NoError(t, err)
	assert.Equal(t, []string{
		"-netdev", "user,id=n0,restrict=on", "-device", "virtio-net-device,netdev=n0,mac=00:50:56:3f:a2:23",
		"-netdev", "user,id=n1,restrict=on", "-device", "virtio-net-device,netdev=n1,mac=52:54:00:12:34:56",
	}, args)
	for _, bad := range []string{"", "00:50:56:3f:a2", "00:50:56:3f:a2:23,romfile=/etc/shadow", "zz:50:56:3f:a2:23"} {
		_, err := nicArgs([]string{bad})
		assert.Error(t, err, bad)
	}
}
