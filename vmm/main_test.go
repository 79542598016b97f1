package vmm

import (
	"os"
	"testing"

	"github.com/vmconv/vmconv/vmm/lab"
)

// TestMain stops the KVM lab that tests of the built-in machine start on
// hosts without hardware virtualization.
func TestMain(m *testing.M) { os.Exit(lab.Main(m)) }
