package main

import (
	"fmt"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/vmconv/vmconv/internal/testutil"
)

// haveWeed is the script condition [weed]: SeaweedFS's weed is built. Its
// absence is an error when the strict environment variable is set.
func haveWeed() (bool, error) {
	if testutil.WeedPath() != "" {
		return true, nil
	}
	if testutil.Strict() {
		return false, fmt.Errorf("weed (SeaweedFS) is not built (formats/neutral/ci-setup.sh) and %s is set", testutil.StrictEnv)
	}
	return false, nil
}

// cmdSeaweed starts a SeaweedFS server with an S3 gateway for the rest of
// the script, sets $S3 to its endpoint and makes the bucket named by its
// argument.
//
//	[!weed] skip
//	seaweed BUCKET
func cmdSeaweed(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: seaweed BUCKET")
	}
	weed := testutil.WeedPath()
	if weed == "" {
		ts.Fatalf("weed (SeaweedFS) is not built: run formats/neutral/ci-setup.sh or set VMCONV_WEED")
	}
	srv, err := testutil.StartSeaweed(weed, ts.MkAbs(".seaweed"))
	ts.Check(err)
	ts.Defer(srv.Stop)
	ts.Check(srv.CreateBucket(args[0]))
	ts.Setenv("S3", srv.Endpoint)
}
