package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRun(t *testing.T) {
	broken := t.TempDir()
	assert.NoError(t, os.WriteFile(filepath.Join(broken, "kustomization.yaml"),
		[]byte("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresource: [job.yaml]\n"), 0o644))

	tests := []struct {
		name         string
		dirs         []string
		code         int
		stdout, errs string
	}{
		{name: "no arguments", code: 2, errs: "usage"},
		{name: "shipped", dirs: []string{"../../kubernetes", "../../kubernetes/kvm"}, stdout: "../../kubernetes/kvm: ok"},
		{name: "unknown field", dirs: []string{broken}, code: 1, errs: `unknown field "resource"`},
		{name: "one of two fails", dirs: []string{"../../kubernetes", broken}, code: 1, stdout: "kubernetes: ok", errs: broken},
		{name: "missing", dirs: []string{filepath.Join(broken, "nope")}, code: 1, errs: "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, tc.code, run(tc.dirs, &stdout, &stderr))
			assert.Contains(t, stdout.String(), tc.stdout)
			assert.Contains(t, stderr.String(), tc.errs)
		})
	}
}
