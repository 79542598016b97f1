package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
)

func newDigestCmd() *cobra.Command {
	var fmtName, store string
	var progress bool
	cmd := &cobra.Command{
		Use:   "digest IMAGE|VM...",
		Short: "Print the content digest of disk images (one line per VM disk)",
		Long: `Print "<digest>  <file>" for each image, or "<digest>  <disk id>" for each disk
of a VM. The digest is SHA-256 over the SHA-256s of the disk's 1 MiB chunks: the
same bytes give the same digest whatever the format.`,
		Args: argsRange(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, path := range args {
				f, err := detectOrLookup(path, fmtName)
				if err != nil {
					return err
				}
				if err := storeApplies(path, f, store); err != nil {
					return err
				}
				prog, endProg := progressBar(cmd, progress, "digest")
				opt := disk.CopyOptions{Progress: prog}
				if f.IsVM() {
					vm, err := openVM(path, f, store)
					if err != nil {
						endProg()
						return err
					}
					for _, d := range diskImages(vm) {
						sum, err := disk.Digest(cmd.Context(), d.Image, opt)
						if err != nil {
							vm.Close()
							endProg()
							return fmt.Errorf("%s: disk %s: %w", path, d.ID, err)
						}
						fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", sum, d.ID)
					}
					vm.Close()
					endProg()
					continue
				}
				img, err := f.OpenImage(path)
				if err != nil {
					endProg()
					return err
				}
				sum, err := disk.Digest(cmd.Context(), img, opt)
				img.Close()
				endProg()
				if err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %s\n", sum, path)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&fmtName, "format", "f", "", "format of the inputs (detected when not given)")
	cmd.Flags().BoolVarP(&progress, "progress", "p", false, "show a progress bar on stderr")
	cmd.Flags().StringVar(&store, "store", "", storeFlagUsage)
	return cmd
}

func newCompareCmd() *cobra.Command {
	var fmtA, fmtB string
	var progress bool
	cmd := &cobra.Command{
		Use:   "compare A B",
		Short: "Compare the contents of two images (exit 0 equal, 1 different)",
		Long: `Compare the guest-visible contents of two images of any formats. Like
qemu-img compare, a larger image equals a smaller one when it is zero past the
smaller one's end. Exit 0 when equal, 1 when they differ (the first differing
offset is printed) or when an image cannot be read.`,
		Args: argsRange(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, _, err := openImage(args[0], fmtA)
			if err != nil {
				return err
			}
			defer a.Close()
			b, _, err := openImage(args[1], fmtB)
			if err != nil {
				return err
			}
			defer b.Close()
			prog, endProg := progressBar(cmd, progress, "compare")
			off, equal, err := disk.Compare(cmd.Context(), a, b, disk.CopyOptions{Progress: prog})
			endProg()
			if err != nil {
				return err
			}
			if equal {
				fmt.Fprintln(cmd.OutOrStdout(), "Images are identical.")
				return nil
			}
			if a.Size() != b.Size() {
				fmt.Fprintf(cmd.OutOrStdout(), "Warning: Image size mismatch!\n")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Content mismatch at offset %d!\n", off)
			return exitError{1}
		},
	}
	cmd.Flags().StringVarP(&fmtA, "a-format", "f", "", "format of A")
	cmd.Flags().StringVarP(&fmtB, "b-format", "F", "", "format of B")
	cmd.Flags().BoolVarP(&progress, "progress", "p", false, "show a progress bar on stderr")
	return cmd
}
