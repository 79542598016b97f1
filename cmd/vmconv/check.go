package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
)

// checkReport is check's --output json: qemu-img check's fields where they
// apply, and the problems themselves.
type checkReport struct {
	Filename    string `json:"filename"`
	Format      string `json:"format"`
	CheckErrors int    `json:"check-errors"` // always 0: a check that cannot run fails
	// Corruptions counts Problems, left out when none, as qemu-img does.
	Corruptions int            `json:"corruptions,omitempty"`
	Problems    []disk.Problem `json:"problems"`
}

func newCheckCmd() *cobra.Command {
	var fmtName, output string
	cmd := &cobra.Command{
		Use:   "check IMAGE",
		Short: "Check an image's structural consistency (exit 1 on corruption)",
		Long: `Check an image's structural consistency: each format's tables, checksums and
overlaps, as qemu-img check does; formats without a structure of their own
(raw) are read whole. Problems are listed with their file and offset, and
exit 1; an image that cannot be examined at all is an error (exit 1 too).`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			path := args[0]
			f, err := detectOrLookup(path, fmtName)
			if err != nil {
				return err
			}
			check := f.Check
			if check == nil {
				check = func(path string) ([]disk.Problem, error) { return nil, readWhole(cmd, path, fmtName) }
			}
			problems, err := check(path)
			if err != nil {
				return err
			}
			if output == "json" {
				rep := checkReport{Filename: path, Format: f.Name, Corruptions: len(problems), Problems: problems}
				if rep.Problems == nil {
					rep.Problems = []disk.Problem{}
				}
				if err := writeJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			} else {
				printProblems(cmd, problems)
			}
			if len(problems) > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&fmtName, "format", "f", "", "format of the input (detected when not given)")
	cmd.Flags().StringVar(&output, "output", "human", "output format: human or json")
	return cmd
}

// readWhole checks an image of a format without a structure of its own:
// reading every allocated byte is the check.
func readWhole(cmd *cobra.Command, path, fmtName string) error {
	img, _, err := openImage(path, fmtName)
	if err != nil {
		return err
	}
	defer img.Close()
	if _, err := disk.Digest(cmd.Context(), img, disk.CopyOptions{}); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// printProblems reports as qemu-img check does.
func printProblems(cmd *cobra.Command, problems []disk.Problem) {
	out := cmd.OutOrStdout()
	for _, p := range problems {
		fmt.Fprintf(out, "ERROR %s\n", p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(out, "\n%d errors were found on the image.\n", len(problems))
		return
	}
	fmt.Fprintln(out, "No errors were found on the image.")
}
