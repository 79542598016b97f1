package main

import (
	"errors"
	"fmt"
	"iter"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/createopt"
)

func newMeasureCmd() *cobra.Command {
	var fmtName, outFmt, sizeArg, output string
	var optList []string
	var exact bool
	cmd := &cobra.Command{
		Use:   "measure [SRC [DST]] -O FMT [--size N]",
		Short: "Say how large a conversion's output will be (as qemu-img measure)",
		Long: `Say how many bytes "vmconv convert SRC DST -O FMT -o ..." will write:
required, for SRC's data (every block its data touches: blocks that hold only
zeros are left out when converting, so this is exact when there are none and
an upper bound otherwise; --exact reads the data to leave them out too), and
fully allocated, every block of the disk (which the guest may fill later).
All the files of a VMDK count, its descriptor too (DST's name is in it;
without DST the output is taken to be "disk.vmdk"). With --size N instead of
SRC, an empty disk of N bytes. Formats: raw, qcow2, vmdk (not
streamOptimized, which is compressed), vpc, vhdx, vdi; compressed qcow2
clusters are refused for the same reason.`,
		Args: argsRange(0, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if (len(args) == 0) == (sizeArg == "") {
				return usagef("measure takes SRC or --size N, one of them")
			}
			opts, err := parseOpts(optList)
			if err != nil {
				return err
			}
			dst := "" // no DST: -O's format, else raw, named disk.vmdk in a descriptor
			if len(args) == 2 {
				dst = args[1]
			}
			f, err := targetFormat(dst, outFmt)
			if err != nil {
				return err
			}
			if f.Measure == nil {
				return fmt.Errorf("%s: measuring is not supported for this format (raw, qcow2, vmdk, vpc, vhdx and vdi are)", f.Name)
			}
			if dst == "" {
				dst = "disk.vmdk"
			}
			m, err := measure(args, fmtName, sizeArg, exact, func(size int64, data iter.Seq[disk.Extent]) (disk.Measurement, error) {
				return f.Measure(dst, size, data, opts)
			})
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), m)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "required size: %d\nfully allocated size: %d\n", m.Required, m.FullyAllocated)
			return nil
		},
	}
	cmd.Flags().StringVarP(&fmtName, "format", "f", "", "format of SRC (detected when not given)")
	cmd.Flags().StringVarP(&outFmt, "output-format", "O", "", "format to measure for (from DST's extension when not given, else raw)")
	cmd.Flags().StringArrayVarP(&optList, "options", "o", nil, "the output format's options, as for convert")
	cmd.Flags().StringVar(&sizeArg, "size", "", "measure an empty disk of this size instead of SRC (e.g. 20G)")
	cmd.Flags().BoolVar(&exact, "exact", false, "read SRC's data and leave out blocks of zeros, as convert does (as slow as reading it)")
	cmd.Flags().StringVar(&output, "output", "human", "output format: human or json")
	return cmd
}

// measure runs fn over SRC's data extents (their non-zero parts when
// exact), or over an empty disk of --size bytes.
func measure(args []string, fmtName, sizeArg string, exact bool, fn func(int64, iter.Seq[disk.Extent]) (disk.Measurement, error)) (disk.Measurement, error) {
	if sizeArg != "" {
		size, err := createopt.Size(sizeArg)
		if err != nil {
			return disk.Measurement{}, usagef("--size %q: %v", sizeArg, err)
		}
		return fn(size, func(func(disk.Extent) bool) {})
	}
	img, _, err := openImage(args[0], fmtName)
	if err != nil {
		return disk.Measurement{}, err
	}
	defer img.Close()
	var extErr, readErr error
	data := disk.DataExtents(img, &extErr)
	if exact {
		data = disk.NonZero(img, data, &readErr)
	}
	m, err := fn(img.Size(), data)
	if err := errors.Join(extErr, readErr); err != nil {
		return disk.Measurement{}, fmt.Errorf("%s: %w", args[0], err)
	}
	return m, err
}
