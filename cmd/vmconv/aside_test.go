package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestAsideWaitsForItsWork(t *testing.T) {
	release := make(chan struct{})
	finished := false
	wait := aside(func() {
		<-release
		finished = true
	})
	go func() {
		time.Sleep(20 * time.Millisecond)
		close(release)
	}()
	wait()
	assert.True(t, finished, "wait returned before the work ended")
}

func TestAsideRaisesThePanicOnTheCaller(t *testing.T) {
	wait := aside(func() { panic("inspection broke") })
	assert.PanicsWithValue(t, "inspection broke", wait)
}
