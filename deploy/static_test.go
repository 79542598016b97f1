package deploy_test

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/deploy"
)

// buildLine finds the Containerfile's `go build` command, continuation
// lines joined: the test builds with exactly what the image builds with.
var buildLine = regexp.MustCompile(`CGO_ENABLED=0 go build [^\n]*`)

// containerfileBuild returns the go build arguments of the Containerfile's
// build stage, with ${VERSION} set to version and the output moved to out.
func containerfileBuild(t *testing.T, version, out string) []string {
	t.Helper()
	raw, err := os.ReadFile("Containerfile")
	require.NoError(t, err)
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	line := buildLine.FindString(text)
	require.NotEmpty(t, line, "Containerfile has no CGO_ENABLED=0 go build line")
	words := shellWords(t, strings.ReplaceAll(line, "${VERSION}", version))
	require.Equal(t, []string{"CGO_ENABLED=0", "go", "build"}, words[:3])
	args := words[1:]
	for i, w := range args {
		if w == "-o" {
			require.Less(t, i+1, len(args), "-o without a path")
			args[i+1] = out
		}
	}
	return args
}

// shellWords splits a command line as the shell would for the plain words
// and double-quoted strings a RUN line uses.
func shellWords(t *testing.T, line string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inWord = !quoted, true
		case (r == ' ' || r == '\t') && !quoted:
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	require.False(t, quoted, "unterminated quote in %q", line)
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

func TestContainerfileBuildArgs(t *testing.T) {
	args := containerfileBuild(t, "v1.2.3", "/tmp/x")
	assert.Equal(t, []string{
		"go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=v1.2.3",
		"-o", "/tmp/x", "./cmd/vmconv",
	}, args)
}

// TestStaticBinary builds vmconv as the Containerfile does and checks that
// the result runs on an image without a libc (distroless/static, scratch):
// no program interpreter, no dynamic section, no shared libraries. A cgo
// import slipping into cmd/vmconv's dependencies fails it.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		// A cold build of the whole command takes 30-90 s on two shared
		// cores; a warm one (the build cache) about a second.
		t.Skip("builds cmd/vmconv; skipped in -short mode")
	}
	bin := filepath.Join(t.TempDir(), "vmconv")
	args := containerfileBuild(t, "static-test", bin)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Dir = ".." // the module root, the Containerfile's build context
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	f, err := elf.Open(bin)
	require.NoError(t, err)
	defer f.Close()
	assert.Empty(t, dynamicParts(t, f))
	// -s strips the symbol table; the version still comes through -X.
	assert.Nil(t, f.Section(".symtab"))

	version, err := exec.CommandContext(ctx, bin, "--version").Output()
	require.NoError(t, err)
	assert.Contains(t, string(version), "static-test")
}

// dynamicParts lists what makes an ELF file depend on a dynamic loader or
// shared libraries; empty for a static binary.
func dynamicParts(t *testing.T, f *elf.File) []string {
	t.Helper()
	var parts []string
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_INTERP:
			parts = append(parts, "PT_INTERP")
		case elf.PT_DYNAMIC:
			parts = append(parts, "PT_DYNAMIC")
		}
	}
	for _, name := range []string{".interp", ".dynamic"} {
		if f.Section(name) != nil {
			parts = append(parts, name)
		}
	}
	libs, err := f.ImportedLibraries()
	require.NoError(t, err)
	for _, lib := range libs {
		parts = append(parts, "needs "+lib)
	}
	return parts
}

// TestDynamicPartsSeesALoader: the check TestStaticBinary relies on does
// find the loader and libc of an ordinary dynamically linked program.
func TestDynamicPartsSeesALoader(t *testing.T) {
	const sh = "/bin/sh"
	f, err := elf.Open(sh) // dash, linked against libc on Debian
	require.NoError(t, err)
	defer f.Close()
	parts := dynamicParts(t, f)
	assert.Contains(t, parts, "PT_INTERP")
	assert.Contains(t, parts, "PT_DYNAMIC")
	assert.Contains(t, strings.Join(parts, " "), "needs libc.so")
}

// containerfileStages returns each stage's name and its lines, in order.
func containerfileStages(t *testing.T) (names []string, body map[string][]string) {
	t.Helper()
	raw, err := os.ReadFile("Containerfile")
	require.NoError(t, err)
	body = map[string][]string{}
	from := regexp.MustCompile(`^FROM\s+(\S+)\s+AS\s+(\S+)$`)
	var cur string
	for _, line := range strings.Split(strings.ReplaceAll(string(raw), "\\\n", " "), "\n") {
		if m := from.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			cur = m[2]
			names = append(names, cur)
			body[cur] = []string{"FROM " + m[1]}
			continue
		}
		if cur != "" && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			body[cur] = append(body[cur], strings.TrimSpace(line))
		}
	}
	return names, body
}

// TestContainerfileStages: the targets the README and the Job name exist,
// the default target is the static image, the qemu target carries QEMU, and
// both run as the uid the Job's securityContext expects.
func TestContainerfileStages(t *testing.T) {
	names, body := containerfileStages(t)
	assert.Equal(t, []string{"build", "qemu", "static"}, names)
	assert.Equal(t, "static", names[len(names)-1], "the last stage is what a plain build produces")
	assert.Contains(t, body["static"][0], "distroless/static")

	qemu := strings.Join(body["qemu"], "\n")
	assert.Contains(t, qemu, "debian:12-slim")
	assert.Contains(t, qemu, "qemu-system-x86")
	assert.Contains(t, qemu, "qemu-utils")

	m, err := deploy.Load("kubernetes")
	require.NoError(t, err)
	sc := m.Jobs[0].Spec.Template.Spec.SecurityContext
	require.NotNil(t, sc.RunAsUser)
	user := fmt.Sprintf("USER %d:%d", *sc.RunAsUser, *sc.RunAsGroup)
	for _, stage := range []string{"qemu", "static"} {
		assert.Contains(t, body[stage], user, "stage %s", stage)
		assert.Contains(t, body[stage], "COPY --from=build /out/vmconv /usr/local/bin/vmconv", "stage %s", stage)
	}
}
