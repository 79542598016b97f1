// Command vmconv moves virtual machines between hypervisors and proves that
// they still boot.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/fix/initfix"
)

// version is set at build time with -ldflags "-X main.version=…"; otherwise
// the module version recorded by the Go toolchain is used.
var version = ""

// usageError marks errors in how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitError carries an exit code without another message (compare: 1 when
// images differ, which is not an error).
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	if initfix.Active() {
		initfix.Main() // vmconv is the fixer's /init; never returns
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes the command line and returns the exit code. It never lets a
// panic reach the user as a Go trace.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "vmconv: internal error: %v\n", r)
			if os.Getenv("VMCONV_DEBUG") != "" {
				stderr.Write(debug.Stack())
			}
			code = 1
		}
	}()
	defer startProfiling(stderr)()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(stderr, "vmconv: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "devel"
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "vmconv",
		Short: "Move virtual machines between hypervisors and prove they still boot",
		Long: `vmconv converts VMware (VMX, VMDK) and Xen (XVA) virtual machines and disks
through a neutral bundle, and boot-verifies converted guests.

Exit codes: 0 success, 1 the operation failed, 2 usage error.`,
		Version:       versionString(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newInfoCmd(), newConvertCmd(), newDigestCmd(), newCompareCmd(), newCheckCmd(), newMeasureCmd(),
		newVerifyCmd(), newBootCmd(), newServeCmd(), newInspectCmd(), newBatchCmd(), newFixCmd())
	return root
}

// argsRange is cobra.RangeArgs returning a usage error.
func argsRange(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || (hi >= 0 && len(args) > hi) {
			if hi == lo {
				return usagef("%s takes %d arguments, got %d", cmd.Name(), lo, len(args))
			}
			return usagef("%s takes %d to %d arguments, got %d", cmd.Name(), lo, hi, len(args))
		}
		return nil
	}
}
