package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/vmconv/vmconv/disk"
	"github.com/vmconv/vmconv/formats/neutral"
	"github.com/vmconv/vmconv/nbd"
)

func newServeCmd() *cobra.Command {
	var (
		addr, diskID, fmtName, store string
		writable                     bool
	)
	cmd := &cobra.Command{
		Use:   "serve VM|IMAGE --nbd unix:PATH|HOST:PORT",
		Short: "Serve a VM's disks (any format) over NBD until interrupted",
		Long: `Serve disks over NBD, read-only unless --writable, in which case writes go
to a copy-on-write overlay and the image itself never changes. Each disk is an
export named by its disk id; with --disk, or for a single disk, it is also the
default export (""), so clients such as
  qemu-img info nbd+unix:///?socket=PATH
read it directly.`,
		Args: argsRange(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if addr == "" {
				return usagef("--nbd is required (unix:PATH or HOST:PORT)")
			}
			vm, _, err := openVMArg(args[0], fmtName, store)
			if err != nil {
				return err
			}
			defer vm.Close()
			exports := map[string]nbd.Export{}
			var names []string
			for _, d := range diskImages(vm) {
				if diskID != "" && d.ID != diskID {
					continue
				}
				ex := nbd.Export{Image: d.Image, Description: d.ID}
				if writable {
					ov, err := disk.NewOverlay(d.Image)
					if err != nil {
						return err
					}
					defer ov.Close()
					ex = nbd.Export{Image: ov, Writable: true, Description: d.ID + " (copy-on-write)"}
				}
				exports[d.ID] = ex
				names = append(names, d.ID)
			}
			if len(exports) == 0 {
				return fmt.Errorf("%s: no disk %q (disks: %s)", args[0], diskID, strings.Join(diskIDs(vm), ", "))
			}
			if len(exports) == 1 {
				exports[""] = exports[names[0]]
			}
			l, err := nbd.Listen(addr)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "serving %s on %s (exports: %s)\n", args[0], addr, strings.Join(names, ", "))
			srv := &nbd.Server{Exports: exports, Logf: func(format string, a ...any) {
				fmt.Fprintf(cmd.ErrOrStderr(), "nbd: "+format+"\n", a...)
			}}
			return srv.Serve(cmd.Context(), l)
		},
	}
	cmd.Flags().StringVar(&addr, "nbd", "", "where to listen: unix:PATH or HOST:PORT")
	cmd.Flags().StringVar(&diskID, "disk", "", "serve only this disk id")
	cmd.Flags().BoolVar(&writable, "writable", false, "accept writes into a copy-on-write overlay")
	cmd.Flags().StringVarP(&fmtName, "format", "f", "", "format of the input (detected when not given)")
	cmd.Flags().StringVar(&store, "store", "", storeFlagUsage)
	return cmd
}

func diskIDs(vm *neutral.VM) []string {
	var ids []string
	for _, d := range vm.Disks {
		ids = append(ids, d.ID)
	}
	return ids
}
