package neutral

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Limits on vm.json values. They are far beyond any real VM and keep a
// hostile file from asking for absurd allocations downstream.
const (
	// MaxVMJSONSize caps the size of a vm.json file read from disk.
	MaxVMJSONSize = 16 << 20
	// MaxDiskSize is the largest virtual disk accepted: 64 TiB (VHDX's and
	// VMFS's limit; VMDK stops at 62 TB).
	MaxDiskSize = 64 << 40
	// MaxCPUs and MaxMemoryMiB bound the hardware description.
	MaxCPUs      = 4096
	MaxMemoryMiB = 64 << 20 // 64 TiB
	// MaxDisks and MaxNICs bound the device lists.
	MaxDisks = 256
	MaxNICs  = 256
	// MaxUnit bounds a disk's unit number on its bus.
	MaxUnit = 1024
	// maxText bounds free-text fields (name, guest OS, command line…).
	maxText = 64 << 10
)

// Firmware values.
var firmwares = []string{"bios", "uefi"}

// Device values.
var devices = []string{"disk", "cdrom"}

// Buses is the fixed set of disk buses.
var Buses = []string{"scsi", "sata", "ide", "nvme", "xen", "virtio"}

var (
	// A disk id names disks/<id>.json: a portable file name, never a path.
	diskIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$`) // ":" for VMX slots such as "scsi0:1"
	macRe    = regexp.MustCompile(`^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$`)
	uuidRe   = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)
	digestRe = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ValidDiskID reports whether id is usable as a disk id: 1–64 characters of
// letters, digits, '.', '_', ':' and '-', starting with a letter or digit (so
// never "..", never a path, never hidden).
func ValidDiskID(id string) bool { return diskIDRe.MatchString(id) }

// ParseVM decodes and validates a vm.json document. name (usually the file's
// path) prefixes every error. Unknown fields are refused, so a misspelt key
// is reported rather than silently ignored.
func ParseVM(data []byte, name string) (*VM, error) {
	if len(data) > MaxVMJSONSize {
		return nil, fmt.Errorf("%s: %d bytes, larger than the %d-byte limit for vm.json", name, len(data), MaxVMJSONSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var vm VM
	if err := dec.Decode(&vm); err != nil {
		return nil, fmt.Errorf("%s: %s", name, jsonErrorText(data, err))
	}
	// Exactly one JSON value.
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: unexpected data after the JSON object at offset %d", name, dec.InputOffset())
	}
	if err := vm.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &vm, nil
}

// ReadVMFile reads and validates the vm.json at path, refusing files larger
// than MaxVMJSONSize before reading them.
func ReadVMFile(path string) (*VM, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if fi.Size() > MaxVMJSONSize {
		return nil, fmt.Errorf("%s: %d bytes, larger than the %d-byte limit for vm.json", path, fi.Size(), MaxVMJSONSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxVMJSONSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ParseVM(data, path)
}

// jsonErrorText turns encoding/json's errors into ones naming the line and
// column, and the field for type mismatches.
func jsonErrorText(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		// Offset counts the offending byte as read.
		line, col := lineCol(data, se.Offset-1)
		return fmt.Sprintf("line %d column %d: invalid JSON: %v", line, col, se)
	case errors.As(err, &te):
		line, col := lineCol(data, te.Offset)
		field := te.Field
		if field == "" {
			field = "(document)"
		}
		return fmt.Sprintf("line %d column %d: %s: expected %s, found JSON %s", line, col, field, te.Type, te.Value)
	case errors.Is(err, io.EOF):
		return "empty file, expected a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	}
	// Unknown fields come as plain errors: `json: unknown field "x"`.
	return strings.TrimPrefix(err.Error(), "json: ")
}

func lineCol(data []byte, off int64) (line, col int) {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	if off < 0 {
		off = 0
	}
	pre := data[:off]
	line = bytes.Count(pre, []byte{'\n'}) + 1
	col = int(off) - (bytes.LastIndexByte(pre, '\n') + 1) + 1
	return line, col
}

func oneOf(field, v string, set []string) error {
	for _, s := range set {
		if v == s {
			return nil
		}
	}
	return fmt.Errorf("%s: %q is not one of %s", field, v, strings.Join(set, ", "))
}

func checkText(field, v string) error {
	if len(v) > maxText {
		return fmt.Errorf("%s: %d bytes, longer than the %d-byte limit", field, len(v), maxText)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s: not valid UTF-8", field)
	}
	return nil
}

// Validate checks every field against schema 1 and returns the first problem,
// naming the field (`disks[2].bus: "foo" is not one of …`).
func (vm *VM) Validate() error {
	if vm.Schema != Schema {
		return fmt.Errorf("schema: %d is not supported (this version reads schema %d)", vm.Schema, Schema)
	}
	if err := checkText("name", vm.Name); err != nil {
		return err
	}
	if vm.UUID != "" && !uuidRe.MatchString(vm.UUID) {
		return fmt.Errorf("uuid: %q is not of the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", vm.UUID)
	}
	if err := oneOf("firmware", vm.Firmware, firmwares); err != nil {
		return err
	}
	if vm.CPUs < 1 || vm.CPUs > MaxCPUs {
		return fmt.Errorf("cpus: %d is outside 1..%d", vm.CPUs, MaxCPUs)
	}
	if vm.CoresPerSocket < 0 || vm.CoresPerSocket > vm.CPUs {
		return fmt.Errorf("cores_per_socket: %d is outside 0..%d (cpus)", vm.CoresPerSocket, vm.CPUs)
	}
	if vm.CoresPerSocket > 0 && vm.CPUs%vm.CoresPerSocket != 0 {
		return fmt.Errorf("cores_per_socket: %d does not divide cpus (%d)", vm.CoresPerSocket, vm.CPUs)
	}
	if vm.MemoryMiB < 1 || vm.MemoryMiB > MaxMemoryMiB {
		return fmt.Errorf("memory_mib: %d is outside 1..%d", vm.MemoryMiB, int64(MaxMemoryMiB))
	}
	if err := checkText("guest_os", vm.GuestOS); err != nil {
		return err
	}
	if len(vm.Disks) > MaxDisks {
		return fmt.Errorf("disks: %d entries, more than the limit of %d", len(vm.Disks), MaxDisks)
	}
	ids := make(map[string]int, len(vm.Disks))
	for i := range vm.Disks {
		if err := vm.Disks[i].validate(fmt.Sprintf("disks[%d]", i)); err != nil {
			return err
		}
		// Case-insensitive: disks/<id>.json must stay distinct on every
		// file system.
		key := strings.ToLower(vm.Disks[i].ID)
		if j, dup := ids[key]; dup {
			return fmt.Errorf("disks[%d].id: %q is already used by disks[%d]", i, vm.Disks[i].ID, j)
		}
		ids[key] = i
	}
	if len(vm.NICs) > MaxNICs {
		return fmt.Errorf("nics: %d entries, more than the limit of %d", len(vm.NICs), MaxNICs)
	}
	for i, n := range vm.NICs {
		f := fmt.Sprintf("nics[%d]", i)
		if n.MAC != "" && !macRe.MatchString(n.MAC) {
			return fmt.Errorf("%s.mac: %q is not of the form xx:xx:xx:xx:xx:xx (hex)", f, n.MAC)
		}
		if err := checkText(f+".network", n.Network); err != nil {
			return err
		}
		if err := checkText(f+".model", n.Model); err != nil {
			return err
		}
	}
	if b := vm.Boot; b != nil {
		for _, s := range []struct{ f, v string }{{"boot.kernel", b.Kernel}, {"boot.initrd", b.Initrd}, {"boot.cmdline", b.Cmdline}} {
			if err := checkText(s.f, s.v); err != nil {
				return err
			}
		}
	}
	if s := vm.Source; s != nil {
		if err := checkText("source.format", s.Format); err != nil {
			return err
		}
		if err := checkText("source.file", s.File); err != nil {
			return err
		}
	}
	return nil
}

func (d *Disk) validate(f string) error {
	if !ValidDiskID(d.ID) {
		return fmt.Errorf("%s.id: %q is not a valid disk id (1-64 letters, digits, '.', '_', ':', '-', starting with a letter or digit)", f, d.ID)
	}
	if err := oneOf(f+".device", d.Device, devices); err != nil {
		return err
	}
	if err := oneOf(f+".bus", d.Bus, Buses); err != nil {
		return err
	}
	if d.Unit < 0 || d.Unit > MaxUnit {
		return fmt.Errorf("%s.unit: %d is outside 0..%d", f, d.Unit, MaxUnit)
	}
	if d.CapacityBytes < 0 || d.CapacityBytes > MaxDiskSize {
		return fmt.Errorf("%s.capacity_bytes: %d is outside 0..%d", f, d.CapacityBytes, int64(MaxDiskSize))
	}
	if d.Digest != "" && !digestRe.MatchString(d.Digest) {
		return fmt.Errorf("%s.digest: %q is not 64 lower-case hex digits", f, d.Digest)
	}
	return nil
}

// MarshalIndent encodes the VM as vm.json: validated, indented, map keys
// sorted, empty lists written as [] rather than null, and a final newline, so
// the same VM always gives the same bytes.
func (vm *VM) MarshalIndent() ([]byte, error) {
	if err := vm.Validate(); err != nil {
		return nil, err
	}
	c := *vm
	if c.Disks == nil {
		c.Disks = []Disk{}
	}
	if c.NICs == nil {
		c.NICs = []NIC{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encode vm.json: %w", err)
	}
	return buf.Bytes(), nil
}
