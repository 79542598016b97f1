package xl

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmconv/vmconv/formats/neutral"
)

type drive struct {
	id, device, bus string
	unit            int
	readOnly        bool
	file            string // of a missing disk
}

func TestRealConfigs(t *testing.T) {
	tests := []struct {
		file     string
		name     string
		cpus     int
		mem      int64
		firmware string
		drives   []drive
		nics     []neutral.NIC
		boot     *neutral.Boot
		kept     []string // settings kept in the extensions
	}{
		{file: "babrakov-ubuntu.cfg", name: "ubuntu", cpus: 2, mem: 1024, firmware: "bios",
			drives: []drive{{"xvda", "disk", "xen", 0, false, "/dev/vg/ubuntu"}},
			nics:   []neutral.NIC{{Network: "ovsbr0"}},
			boot:   &neutral.Boot{Kernel: "/var/lib/xen/images/ubuntu-netboot/trusty14LTS/vmlinuz", Initrd: "/var/lib/xen/images/ubuntu-netboot/trusty14LTS/initrd.gz"}},
		{file: "babrakov-ubuhvm.cfg", name: "ubuhvm", cpus: 2, mem: 1024, firmware: "bios",
			drives: []drive{{"xvda", "disk", "xen", 0, false, "/dev/vg/ubuntu"}, {"xvdc", "cdrom", "xen", 2, true, ""}},
			nics:   []neutral.NIC{{}}, kept: []string{"boot", "builder", "vnc"}},
		{file: "babrakov-windows.cfg", name: "windows", cpus: 2, mem: 1024, firmware: "bios",
			drives: []drive{{"hda", "disk", "ide", 0, false, "/dev/vg/windows"}, {"hdc", "cdrom", "ide", 2, true, ""}},
			nics:   []neutral.NIC{{}}, kept: []string{"boot", "builder", "vnc"}},
		{file: "babrakov-pegas.cfg", name: "pegas", cpus: 8, mem: 2048, firmware: "bios",
			drives: []drive{{"xvda", "disk", "xen", 0, false, "/dev/vg/pegas-disk"}, {"xvdb", "disk", "xen", 1, false, "/dev/vg/pegas-swap"}},
			nics:   []neutral.NIC{{Network: "xenbr0"}}, boot: &neutral.Boot{Cmdline: "root=/dev/xvda1"}, kept: []string{"bootloader"}},
		{file: "babrakov-krs23.ru.cfg", name: "krs23.ru", cpus: 4, mem: 1024, firmware: "bios",
			drives: []drive{{"xvda2", "disk", "xen", 0, false, "/dev/vg/krs23.ru-disk"}, {"xvda1", "disk", "xen", 0, false, "/dev/vg/krs23.ru-swap"},
				{"xvda3", "disk", "xen", 0, false, "/dev/vg/krs23.ru-home"}},
			nics: []neutral.NIC{{MAC: "00:16:3e:76:47:d4", Network: "xenbr0"}}, boot: &neutral.Boot{Cmdline: "root=/dev/xvda2 ro"},
			kept: []string{"bootloader", "home", "on_crash", "on_poweroff", "on_reboot"}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			vm, err := Read(filepath.Join("testdata", tc.file), ReadOptions{MarkMissing: true})
			require.NoError(t, err)
			require.NoError(t, vm.Validate())
			assert.Equal(t, tc.name, vm.Name)
			assert.Equal(t, tc.cpus, vm.CPUs)
			assert.Equal(t, tc.mem, vm.MemoryMiB)
			assert.Equal(t, tc.firmware, vm.Firmware)
			var got []drive
			for _, d := range vm.Disks {
				got = append(got, drive{d.ID, d.Device, d.Bus, d.Unit, d.ReadOnly, d.File})
			}
			assert.Equal(t, tc.drives, got)
			assert.Equal(t, tc.nics, vm.NICs)
			assert.Equal(t, tc.boot, vm.Boot)
			var kept []string
			if x, ok := vm.Extensions.Xen[ExtKey].(map[string]any); ok {
				cfg, _ := x["cfg"].(map[string]any)
				for k := range cfg {
					kept = append(kept, k)
				}
			}
			assert.ElementsMatch(t, tc.kept, kept)
		})
	}
}

func TestDiskSpec(t *testing.T) {
	tests := []struct {
		spec    string
		want    DiskSpec
		wantErr string
	}{
		{spec: "phy:/dev/vg/d,xvda,w", want: DiskSpec{Target: "/dev/vg/d", Format: "raw", Vdev: "xvda", Access: "rw", Legacy: true}},
		{spec: "file:/path/img,xvda1,r", want: DiskSpec{Target: "/path/img", Format: "raw", Vdev: "xvda1", Access: "ro", Legacy: true}},
		{spec: "/path.qcow2,qcow2,xvda,rw", want: DiskSpec{Target: "/path.qcow2", Format: "qcow2", Vdev: "xvda", Access: "rw"}},
		{spec: "/dev/vg/g,,hda", want: DiskSpec{Target: "/dev/vg/g", Format: "raw", Vdev: "hda", Access: "rw"}},
		{spec: "tap:qcow2:/srv/a.qcow2,xvdb,w", want: DiskSpec{Target: "/srv/a.qcow2", Format: "qcow2", Vdev: "xvdb", Access: "rw", Legacy: true}},
		{spec: "format=raw, vdev=hdc, access=ro, devtype=cdrom, target=/root/x.iso",
			want: DiskSpec{Target: "/root/x.iso", Format: "raw", Vdev: "hdc", Access: "ro", CDROM: true}},
		{spec: "format=vhd, vdev=xvdb, access=rw, target=/srv/my, odd:name.vhd",
			want: DiskSpec{Target: "/srv/my, odd:name.vhd", Format: "vhd", Vdev: "xvdb", Access: "rw"}},
		{spec: "/root/x.iso,,hdc,cdrom", want: DiskSpec{Target: "/root/x.iso", Format: "raw", Vdev: "hdc", Access: "ro", CDROM: true}},
		{spec: ",hdc:cdrom,r", want: DiskSpec{Format: "raw", Vdev: "hdc", Access: "ro", CDROM: true, Legacy: true}},
		{spec: "file:/srv/iso/w.iso, vdev=xvdc, devtype=cdrom, access=ro", want: DiskSpec{Target: "/srv/iso/w.iso", Format: "raw", Vdev: "xvdc", Access: "ro", CDROM: true}},
		{spec: "format=qcow2, vdev=xvda, access=rw, backendtype=qdisk, target=d.qcow2",
			want: DiskSpec{Target: "d.qcow2", Format: "qcow2", Vdev: "xvda", Access: "rw", Other: []string{"backendtype=qdisk"}}},
		{spec: "phy:/dev/loop0, xvda, w, discard", want: DiskSpec{Target: "/dev/loop0", Format: "raw", Vdev: "xvda", Access: "rw", Legacy: true, Other: []string{"discard"}}},
		{spec: "/x,raw,xvda,rw,extra", wantErr: "5 positional values"},
		{spec: "format=vmdk, vdev=xvda, target=/x", wantErr: `format "vmdk"`},
		{spec: "format=raw, target=/x", wantErr: "no vdev"},
		{spec: "format=raw, vdev=fd0, target=/x", wantErr: `vdev "fd0"`},
		{spec: "format=raw, vdev=xvda01, target=/x", wantErr: `partition "01"`},
		{spec: "/x,raw,xvda,maybe", wantErr: `access "maybe"`},
		{spec: "vdev=xvda", wantErr: "no target"},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			got, err := ParseDiskSpec(tc.spec)
			if tc.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, text, wantErr string }{
		{"python", "import os\nname = 'x'\n", "line 1: import: expected '='"},
		{"unclosed string", "name = \"x\nvcpus = 1\n", "line 1: string not closed"},
		{"unclosed list", "name = 'x'\ndisk = [ 'a',\n", "line 2: list not closed"},
		{"junk after value", "name = 'x' 'y'\n", "line 1: name: unexpected"},
		{"bad number", "vcpus = 12abc\n", `line 1: "12abc" is not a number`},
		{"no name", "vcpus = 2\n", "no name"},
		{"vcpus too many", "name='x'\nvcpus = 99999\n", "line 2: vcpus"},
		{"disk not a list", "name='x'\ndisk = 'phy:/x,xvda,w'\n", "line 2: disk: expected a list"},
		{"bad mac", "name='x'\nvif = [ 'mac=00:16:3e:zz:00:01' ]\n", "mac=\"00:16:3e:zz:00:01\""},
		{"deep list", "name='x'\nv = [[[[[[[[[[1]]]]]]]]]]\n", "nested more than"},
		{"bad type", "name='x'\ntype = 'kvm'\n", `type: "kvm"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Parse("t.cfg", []byte(tc.text))
			if err == nil {
				_, _, err = ToVM(f)
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestGrammar(t *testing.T) {
	f, err := Parse("t.cfg", []byte("# c\nname = \"a\\\"b\"; memory = 0x400 # trailing\nextra = 'quiet'\nextra += \" splash\"\n"+
		"disk = [ 'x',\n  # comment inside\n  \"y\",\n]\ncpus = [ [ 1, 2 ], 3 ]\n"))
	require.NoError(t, err)
	v, _, _ := f.Get("name")
	assert.Equal(t, `a"b`, v.Text)
	v, _, _ = f.Get("memory")
	assert.Equal(t, "0x400", v.Text)
	assert.True(t, v.Number)
	v, _, _ = f.Get("extra")
	assert.Equal(t, "quiet splash", v.Text)
	v, line, _ := f.Get("disk")
	assert.Equal(t, 5, line)
	require.Len(t, v.Items, 2)
	assert.Equal(t, "y", v.Items[1].Text)
	v, _, _ = f.Get("cpus")
	require.Len(t, v.Items, 2)
	assert.Len(t, v.Items[0].Items, 2)
}

func TestDetect(t *testing.T) {
	for _, f := range []string{"babrakov-ubuntu.cfg", "babrakov-ubuhvm.cfg", "babrakov-windows.cfg", "babrakov-pegas.cfg", "babrakov-krs23.ru.cfg"} {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		require.NoError(t, err)
		assert.True(t, Detect(data), f)
	}
	for _, s := range []string{".encoding = \"UTF-8\"\nconfig.version = \"8\"\ndisplayName = \"x\"\n", "<?xml version=\"1.0\"?><Envelope/>",
		"[section]\nname = value\n", "name = 'x'\n", "#!/bin/sh\nname=x\n"} {
		assert.False(t, Detect([]byte(s)), s)
	}
}

// xlucheck builds the libxlutil oracle (Xen's own parser) or skips.
func xlucheck(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("cc"); err != nil {
		t.Skip("no C compiler for the libxlutil oracle")
	}
	bin := filepath.Join(t.TempDir(), "xlucheck")
	out, err := exec.Command("cc", "-o", bin, filepath.Join("testdata", "tools", "xlucheck.c"), "-lxlutil", "-lxenlight").CombinedOutput()
	if err != nil {
		if os.Getenv("VMCONV_REQUIRE_TOOLS") != "" {
			t.Fatalf("libxlutil oracle: %v\n%s", err, out)
		}
		t.Skipf("libxlutil (Debian libxen-dev) not here: %s", strings.TrimSpace(string(out)))
	}
	return bin
}

// TestOracleReadsRealConfigs compares our reading of the real configs with
// Xen's own parser's.
func TestOracleReadsRealConfigs(t *testing.T) {
	bin := xlucheck(t)
	files, _ := filepath.Glob(filepath.Join("testdata", "*.cfg"))
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			out, err := exec.Command(bin, f).CombinedOutput()
			require.NoError(t, err, "%s", out)
			vm, err := Read(f, ReadOptions{MarkMissing: true})
			require.NoError(t, err)
			assert.Equal(t, xluDisks(string(out)), ourDisks(t, f))
			assert.Contains(t, string(out), "name "+vm.Name+"\n")
		})
	}
}

// xluDisks keeps the oracle's disk lines.
func xluDisks(out string) []string {
	var d []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "disk ") {
			d = append(d, l)
		}
	}
	return d
}

// ourDisks renders our disk specs as the oracle prints them.
func ourDisks(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f, err := Parse(path, data)
	require.NoError(t, err)
	_, specs, err := ToVM(f)
	require.NoError(t, err)
	var out []string
	for _, s := range specs {
		cd, rw := 0, 1
		if s.CDROM {
			cd = 1
		}
		if s.Access == "ro" {
			rw = 0
		}
		out = append(out, strings.Join([]string{"disk", s.Vdev, s.Format, "cdrom=" + itoa(cd), "rw=" + itoa(rw), s.Target}, " "))
	}
	return out
}

func itoa(i int) string { return string(rune('0' + i)) }
