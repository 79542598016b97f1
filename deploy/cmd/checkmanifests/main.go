// Command checkmanifests runs deploy's offline checks on kustomization
// directories: the shipped ones, or a copy edited for a real fleet (a new
// N, another plan, an overlay), before it goes to a cluster.
//
//	go run ./deploy/cmd/checkmanifests deploy/kubernetes deploy/kubernetes/kvm
//
// Exit codes as vmconv's: 0 all pass, 1 a check failed, 2 usage error.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/vmconv/vmconv/deploy"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(dirs []string, stdout, stderr io.Writer) int {
	if len(dirs) == 0 {
		fmt.Fprintln(stderr, "usage: checkmanifests KUSTOMIZATION-DIR...")
		return 2
	}
	code := 0
	for _, dir := range dirs {
		if err := check(dir); err != nil {
			fmt.Fprintf(stderr, "%s:\n%v\n", dir, err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", dir)
	}
	return code
}

func check(dir string) error {
	m, err := deploy.Load(dir)
	if err != nil {
		return err
	}
	return deploy.Check(m)
}
