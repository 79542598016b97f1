package boot

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memFS is an in-memory filesystem for configuration tests.
type memFS map[string]string

func (m memFS) ReadFile(name string, max int64) ([]byte, error) {
	s, ok := m[path.Clean(name)]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	if int64(len(s)) > max {
		return nil, fmt.Errorf("%s: too large", name)
	}
	return []byte(s), nil
}

func (m memFS) readDir(name string) ([]string, error) {
	name = path.Clean(name)
	seen := map[string]bool{}
	for k := range m {
		if rel, ok := strings.CutPrefix(k, strings.TrimSuffix(name, "/")+"/"); ok {
			seen[strings.Split(rel, "/")[0]] = true
		}
	}
	if len(seen) == 0 {
		return nil, fs.ErrNotExist
	}
	var out []string
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out, nil
}

func (m memFS) Stat(name string) (int64, bool, error) {
	name = path.Clean(name)
	if s, ok := m[name]; ok {
		return int64(len(s)), false, nil
	}
	if _, err := m.readDir(name); err == nil || name == "/" {
		return 0, true, nil
	}
	return 0, false, fs.ErrNotExist
}

func memVolumes(fss ...memFS) []*volume {
	var out []*volume
	for i, f := range fss {
		out = append(out, &volume{disk: 0, part: i + 1, tableKind: "mbr", fsType: "ext4",
			uuid: fmt.Sprintf("uuid-%d", i+1), label: fmt.Sprintf("label-%d", i+1), fs: f})
	}
	return out
}

// grubChoose runs the configuration at cfgPath on the first volume and
// returns what its default entry loads.
func grubChoose(t *testing.T, vols []*volume, cfgPath string) (*loaded, error) {
	t.Helper()
	b, ok := readConfig(vols[0], cfgPath)
	require.True(t, ok)
	g := newGrub(vols, vols[0], path.Dir(cfgPath))
	if err := g.runFile(vols[0], cfgPath, b); err != nil {
		return nil, err
	}
	return g.choose()
}

const menuCfg = `
set default=%s
menuentry 'First' --id first {
	linux /k1 a=1
	initrd /i1
}
submenu 'Advanced' $menuentry_id_option adv {
	menuentry 'Sub A' --id sub-a { linux /k2 a=2 }
	menuentry "Sub B" --class x $menuentry_id_option 'sub-b' {
		linux16 /k3 a=3
		initrd16 /i3 /i3b
	}
}
menuentry 'Third' --id=third { linuxefi /k4 "a=4 b" 'c=$x' ; initrdefi /i4 }
`

func TestGrubDefault(t *testing.T) {
	for _, tc := range []struct {
		def, kernel, cmdline, title string
		initrds                     []string
	}{
		{`0`, "/k1", "a=1", "First", []string{"/i1"}},
		{`""`, "/k1", "a=1", "First", []string{"/i1"}},
		{`2`, "/k4", "a=4 b c=$x", "Third", []string{"/i4"}},
		{`"1>1"`, "/k3", "a=3", "Advanced>Sub B", []string{"/i3", "/i3b"}},
		{`adv>sub-a`, "/k2", "a=2", "Advanced>Sub A", nil},
		{`"Advanced>Sub B"`, "/k3", "a=3", "Advanced>Sub B", []string{"/i3", "/i3b"}},
		{`third`, "/k4", "a=4 b c=$x", "Third", []string{"/i4"}},
		{`Third`, "/k4", "a=4 b c=$x", "Third", []string{"/i4"}},
		{`1`, "/k2", "a=2", "Advanced>Sub A", nil},    // a submenu opens on its first entry
		{`7`, "/k1", "a=1", "First", []string{"/i1"}}, // out of range: GRUB boots the first
		{`nosuch`, "/k1", "a=1", "First", []string{"/i1"}},
	} {
		t.Run(tc.def, func(t *testing.T) {
			vols := memVolumes(memFS{"/boot/grub/grub.cfg": fmt.Sprintf(menuCfg, tc.def)})
			l, err := grubChoose(t, vols, "/boot/grub/grub.cfg")
			require.NoError(t, err)
			assert.Equal(t, tc.kernel, l.kernel)
			assert.Equal(t, tc.cmdline, l.cmdline)
			assert.Equal(t, tc.title, l.title)
			assert.Equal(t, tc.initrds, l.initrds)
		})
	}
}

func TestGrubSavedEntry(t *testing.T) {
	env := func(s string) string {
		s = "# GRUB Environment Block\n" + s
		return s + strings.Repeat("#", 1024-len(s))
	}
	cfg := `if [ -s $prefix/grubenv ]; then
  set have_grubenv=true
  load_env
fi
if [ "${next_entry}" ] ; then
   set default="${next_entry}"
   set next_entry=
   save_env next_entry
else
   set default="${saved_entry}"
fi
` + strings.SplitN(menuCfg, "\n", 3)[2]
	for _, tc := range []struct{ name, env, kernel string }{
		{"saved title path", "saved_entry=Advanced>Sub B\n", "/k3"},
		{"saved id", "saved_entry=third\n", "/k4"},
		{"next_entry wins", "saved_entry=third\nnext_entry=adv>sub-a\n", "/k2"},
		{"empty env", "", "/k1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vols := memVolumes(memFS{"/boot/grub/grub.cfg": cfg, "/boot/grub/grubenv": env(tc.env)})
			l, err := grubChoose(t, vols, "/boot/grub/grub.cfg")
			require.NoError(t, err)
			assert.Equal(t, tc.kernel, l.kernel)
		})
	}
	t.Run("default=saved", func(t *testing.T) {
		vols := memVolumes(memFS{"/boot/grub/grub.cfg": "load_env\nset default=saved\n" + strings.SplitN(menuCfg, "\n", 3)[2],
			"/boot/grub/grubenv": env("saved_entry=sub-b\n")})
		l, err := grubChoose(t, vols, "/boot/grub/grub.cfg")
		require.NoError(t, err)
		assert.Equal(t, "/k1", l.kernel) // "sub-b" is inside the submenu: GRUB needs the path, else boots entry 0
		vols = memVolumes(memFS{"/boot/grub/grub.cfg": "load_env\nset default=saved\n" + strings.SplitN(menuCfg, "\n", 3)[2],
			"/boot/grub/grubenv": env("saved_entry=adv>sub-b\n")})
		l, err = grubChoose(t, vols, "/boot/grub/grub.cfg")
		require.NoError(t, err)
		assert.Equal(t, "/k3", l.kernel)
	})
}

func TestGrubDevicesAndScript(t *testing.T) {
	boot := memFS{
		"/grub/grub.cfg": `
function pick { set kargs="root=$1 $2" }
pick /dev/sda2 quiet
set k=vmlinuz-6
if [ -f /$k ] ; then found=yes ; else found=no ; fi
menuentry 'x' {
	search --no-floppy --fs-uuid --set=bootdev uuid-1
	search.fs_label label-2 rootdev
	linux ($bootdev)/$k $kargs found=$found other=$rootdev
	initrd (hd0,msdos2)/initrd.img
}
`,
		"/vmlinuz-6": "K",
	}
	root := memFS{"/initrd.img": "I", "/etc/fstab": ""}
	vols := memVolumes(boot, root)
	l, err := grubChoose(t, vols, "/grub/grub.cfg")
	require.NoError(t, err)
	assert.Equal(t, "/vmlinuz-6", l.kernel)
	assert.Same(t, vols[0], l.kernelVol)
	assert.Equal(t, "root=/dev/sda2 quiet found=yes other=hd0,msdos2", l.cmdline)
	assert.Equal(t, []string{"/initrd.img"}, l.initrds)
	assert.Same(t, vols[1], l.initrdVols[0])
}

func TestGrubXenMultiboot(t *testing.T) {
	vols := memVolumes(memFS{"/boot/grub/grub.cfg": `menuentry 'Debian GNU/Linux, with Xen hypervisor' {
	multiboot2	/boot/xen-4.17-amd64.gz placeholder   ${xen_rm_opts}
	echo	'Loading Linux 6.1.0-50-amd64 ...'
	module2	/boot/vmlinuz-6.1.0-50-amd64 placeholder root=UUID=x ro  quiet
	module2	--nounzip   /boot/initrd.img-6.1.0-50-amd64
}`})
	l, err := grubChoose(t, vols, "/boot/grub/grub.cfg")
	require.NoError(t, err)
	assert.Equal(t, "/boot/vmlinuz-6.1.0-50-amd64", l.kernel)
	assert.Equal(t, "placeholder root=UUID=x ro quiet", l.cmdline)
	assert.Equal(t, []string{"/boot/initrd.img-6.1.0-50-amd64"}, l.initrds)
}

func TestGrubErrors(t *testing.T) {
	for _, tc := range []struct{ name, cfg, err string }{
		{"chainloader", "menuentry 'Windows' { chainloader +1 }", "chain-loads"},
		{"no kernel", "menuentry 'Nothing' { echo hi }", "loads no Linux kernel"},
		{"no entries", "set default=0", "no menu entries"},
		{"unknown device", "menuentry 'x' { linux (hd5,gpt9)/k }", "(hd5,gpt9): no such filesystem"},
		{"unterminated quote", "menuentry 'x { linux /k }", "unterminated single quote"},
		{"missing fi", "if true; then\nset a=b\n", "if without fi"},
		{"missing brace", "menuentry 'x' {\nlinux /k\n", "block without }"},
		{"function recursion", "function f { f }\nf\nmenuentry x { linux /k }", "nested deeper"},
		{"doubling variable", "set a=x\n" + strings.Repeat("set a=$a$a\n", 40) + "menuentry x { linux /k }", "longer than 16384 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vols := memVolumes(memFS{"/boot/grub/grub.cfg": tc.cfg})
			_, err := grubChoose(t, vols, "/boot/grub/grub.cfg")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
}

func TestGrubConfigfileAndSource(t *testing.T) {
	esp := memFS{"/EFI/debian/grub.cfg": "search.fs_uuid uuid-2 root hd0,gpt2 \nset prefix=($root)'/boot/grub'\nconfigfile $prefix/grub.cfg\n"}
	root := memFS{
		"/boot/grub/grub.cfg":   "menuentry 'stale' { linux /wrong }\nsource ${prefix}/custom.cfg\n",
		"/boot/grub/custom.cfg": "set default=custom\nmenuentry 'Custom' --id custom { linux /boot/vmlinuz root=/dev/sda2 }\n",
	}
	vols := memVolumes(esp, root)
	l, err := grubChoose(t, vols, "/EFI/debian/grub.cfg")
	require.NoError(t, err)
	assert.Equal(t, "/boot/vmlinuz", l.kernel)
	assert.Same(t, vols[1], l.kernelVol)
	assert.Equal(t, "disk 0 partition 2: /boot/grub/custom.cfg", l.config)
}
