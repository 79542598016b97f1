package verdict

// Report is the outcome of one verification, as `vmconv verify --output json`
// prints it.
type Report struct {
	Result    string       `json:"result"` // "pass" or "fail"
	Reason    string       `json:"reason"`
	Marker    string       `json:"marker,omitempty"`
	BootMS    int64        `json:"boot_ms"`
	Host      string       `json:"host"`   // virtualization kind: hardware, pvm, emulated, none
	Engine    string       `json:"engine"` // builtin or qemu
	Kernel    string       `json:"kernel"`
	Cmdline   string       `json:"cmdline"`
	CPUs      int          `json:"cpus"`
	MemoryMiB int64        `json:"memory_mib"`
	Disks     []DiskReport `json:"disks"`
	Console   string       `json:"console"`
	// Findings are what an inspection of the guest's disks says stops it
	// booting in vmconv's machines, given for a failed boot.
	Findings []Finding `json:"findings,omitempty"`
}

// Finding is one problem the inspection found in the guest (see the guest
// package): its code, where it is, and the fix.
type Finding struct {
	Code    string `json:"code"`
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// DiskReport names one disk the guest saw.
type DiskReport struct {
	ID     string `json:"id"`
	Format string `json:"format"`
	Digest string `json:"digest"`
}

// Result strings.
const (
	Pass = "pass"
	Fail = "fail"
)

// Apply fills the report's result, reason and marker from a decision.
func (r *Report) Apply(res Result) {
	r.Result = Fail
	if res.Pass {
		r.Result = Pass
	}
	r.Reason = res.Reason
	r.Marker = res.Marker
}
