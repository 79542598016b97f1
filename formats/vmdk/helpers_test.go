package vmdk

import "os/exec"

func hasTool(name string) bool { _, err := exec.LookPath(name); return err == nil }
