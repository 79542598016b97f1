package ovf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// MaxDescriptorSize bounds the .ovf read into memory. Real descriptors are
// a few KiB to a few hundred KiB (long EULAs); 16 MiB is far above any.
const MaxDescriptorSize = 16 << 20

// The structures below read an envelope whatever its namespace prefixes:
// their tags name local names only, which encoding/xml matches in any
// namespace, so `ovf:`-prefixed documents, default-namespace documents,
// OVF 1.x (envelope/1) and 2.x (envelope/2) all decode the same way.

// Envelope is an OVF descriptor's root element.
type Envelope struct {
	XMLName    xml.Name       `xml:"Envelope"`
	Version    string         `xml:"version,attr"`
	References []FileRef      `xml:"References>File"`
	Disks      []DiskEntry    `xml:"DiskSection>Disk"`
	Networks   []NetworkEntry `xml:"NetworkSection>Network"`
	Configs    []DeployConfig `xml:"DeploymentOptionSection>Configuration"`
	System     *VirtualSystem `xml:"VirtualSystem"`
	Collection *Collection    `xml:"VirtualSystemCollection"`
	// NS is the envelope namespace ("http://schemas.dmtf.org/ovf/envelope/1"
	// or ".../2").
	NS string `xml:"-"`
}

// FileRef is a References/File: a file of the package.
type FileRef struct {
	ID   string `xml:"id,attr"`
	Href string `xml:"href,attr"`
	Size string `xml:"size,attr"`
	// Compression "gzip" means the file is stored gzip-compressed.
	Compression string `xml:"compression,attr"`
	ChunkSize   string `xml:"chunkSize,attr"`
}

// DiskEntry is a DiskSection/Disk.
type DiskEntry struct {
	DiskID        string `xml:"diskId,attr"`
	FileRef       string `xml:"fileRef,attr"`
	Capacity      string `xml:"capacity,attr"`
	CapacityUnits string `xml:"capacityAllocationUnits,attr"`
	Format        string `xml:"format,attr"`
	PopulatedSize string `xml:"populatedSize,attr"`
	ParentRef     string `xml:"parentRef,attr"`
}

// NetworkEntry is a NetworkSection/Network.
type NetworkEntry struct {
	Name string `xml:"name,attr"`
}

// DeployConfig is a DeploymentOptionSection/Configuration.
type DeployConfig struct {
	ID      string `xml:"id,attr"`
	Default string `xml:"default,attr"`
	Label   string `xml:"Label"`
}

// Collection is a VirtualSystemCollection; collections may nest.
type Collection struct {
	ID          string          `xml:"id,attr"`
	Systems     []VirtualSystem `xml:"VirtualSystem"`
	Collections []Collection    `xml:"VirtualSystemCollection"`
}

// VirtualSystem is one VM of the package.
type VirtualSystem struct {
	ID         string       `xml:"id,attr"`
	Name       string       `xml:"Name"`
	Annotation string       `xml:"AnnotationSection>Annotation"`
	OS         *OSSection   `xml:"OperatingSystemSection"`
	Hardware   []HWSection  `xml:"VirtualHardwareSection"`
	Products   []Product    `xml:"ProductSection"`
	Machine    *VBoxMachine `xml:"Machine"`
}

// OSSection is the OperatingSystemSection.
type OSSection struct {
	ID          string `xml:"id,attr"`
	Version     string `xml:"version,attr"`
	OSType      string `xml:"osType,attr"` // vmw:osType
	Description string `xml:"Description"`
	VBoxOSType  string `xml:"OSType"` // vbox:OSType
}

// Product is a ProductSection; only its properties matter here (a disk
// capacity may be "${key}").
type Product struct {
	Properties []Property `xml:"Property"`
}

// Property is a ProductSection/Property.
type Property struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

// HWSection is a VirtualHardwareSection. Items keep document order across
// the three element kinds.
type HWSection struct {
	System    *SystemEntry `xml:"System"`
	Items     []Item       `xml:",any"`
	Transport string       `xml:"transport,attr"`
}

// SystemEntry is VirtualHardwareSection/System.
type SystemEntry struct {
	Type       string `xml:"VirtualSystemType"`
	Identifier string `xml:"VirtualSystemIdentifier"`
}

// Item is an Item (rasd:), StorageItem (sasd:) or EthernetPortItem (epasd:)
// of a hardware section, or a vmw:Config / vmw:ExtraConfig directly inside
// it (Kind says which).
type Item struct {
	XMLName         xml.Name
	Configuration   string   `xml:"configuration,attr"`
	Bound           string   `xml:"bound,attr"`
	Required        string   `xml:"required,attr"`
	InstanceID      string   `xml:"InstanceID"`
	ResourceType    string   `xml:"ResourceType"`
	ResourceSubType string   `xml:"ResourceSubType"`
	Address         string   `xml:"Address"`
	AddressOnParent string   `xml:"AddressOnParent"`
	Parent          string   `xml:"Parent"`
	HostResource    []string `xml:"HostResource"`
	Connection      []string `xml:"Connection"`
	VirtualQuantity string   `xml:"VirtualQuantity"`
	AllocationUnits string   `xml:"AllocationUnits"`
	ElementName     string   `xml:"ElementName"`
	Caption         string   `xml:"Caption"`
	CoresPerSocket  string   `xml:"CoresPerSocket"` // vmw:CoresPerSocket
	Configs         []KV     `xml:"Config"`
	// Key and Value are set for a vmw:Config or vmw:ExtraConfig element.
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

// KV is a vmw:Config inside an item.
type KV struct {
	Key   string `xml:"key,attr"`
	Value string `xml:"value,attr"`
}

// VBoxMachine is VirtualBox's own machine description (vbox:Machine).
type VBoxMachine struct {
	Name     string        `xml:"name,attr"`
	UUID     string        `xml:"uuid,attr"`
	OSType   string        `xml:"OSType,attr"`
	Hardware VBoxHardware  `xml:"Hardware"`
	Platform *VBoxPlatform `xml:"Platform"`
}

// VBoxHardware is vbox:Machine/Hardware.
type VBoxHardware struct {
	CPU      *VBoxCPU      `xml:"CPU"`
	Memory   *VBoxMemory   `xml:"Memory"`
	Firmware *VBoxFirmware `xml:"Firmware"`
	Adapters []VBoxAdapter `xml:"Network>Adapter"`
}

// VBoxPlatform is vbox:Machine/Platform (VirtualBox 7.1 and later put the
// CPU there).
type VBoxPlatform struct {
	CPU *VBoxCPU `xml:"CPU"`
}

// VBoxCPU is Hardware/CPU.
type VBoxCPU struct {
	Count string `xml:"count,attr"`
}

// VBoxMemory is Hardware/Memory.
type VBoxMemory struct {
	RAMSize string `xml:"RAMSize,attr"`
}

// VBoxFirmware is Hardware/Firmware ("BIOS", "EFI", "EFI32", "EFI64", "EFIDUAL").
type VBoxFirmware struct {
	Type string `xml:"type,attr"`
}

// VBoxAdapter is a Hardware/Network/Adapter.
type VBoxAdapter struct {
	Slot    string `xml:"slot,attr"`
	Enabled string `xml:"enabled,attr"`
	MAC     string `xml:"MACAddress,attr"`
	Type    string `xml:"type,attr"`
}

// Kinds of hardware-section children.
const (
	kindItem     = "Item"
	kindStorage  = "StorageItem"
	kindEthernet = "EthernetPortItem"
	kindConfig   = "Config"
	kindExtra    = "ExtraConfig"
)

// Kind is the element's local name: Item, StorageItem, EthernetPortItem,
// Config or ExtraConfig (anything else is ignored).
func (it *Item) Kind() string { return it.XMLName.Local }

// ParseError is a descriptor that cannot be read: the file, the line and
// what is wrong.
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("ovf %s: line %d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("ovf %s: %v", e.File, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// ErrNotOVF is returned for XML that is not an OVF envelope.
var ErrNotOVF = errors.New("not an OVF descriptor (no Envelope root element)")

// Parse decodes a descriptor. name is used in errors.
func Parse(name string, data []byte) (*Envelope, error) {
	if len(data) > MaxDescriptorSize {
		return nil, &ParseError{File: name, Err: fmt.Errorf("descriptor of %d bytes is larger than the %d allowed", len(data), MaxDescriptorSize)}
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.CharsetReader = charsetReader
	var env Envelope
	// Find the root to learn its namespace, then decode it.
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil, &ParseError{File: name, Err: ErrNotOVF}
		}
		if err != nil {
			return nil, &ParseError{File: name, Line: lineOf(data, dec.InputOffset()), Err: err}
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Local != "Envelope" {
			return nil, &ParseError{File: name, Err: fmt.Errorf("%w: root is <%s>", ErrNotOVF, se.Name.Local)}
		}
		if err := dec.DecodeElement(&env, &se); err != nil {
			return nil, &ParseError{File: name, Line: lineOf(data, dec.InputOffset()), Err: err}
		}
		env.NS = se.Name.Space
		return &env, nil
	}
}

// charsetReader accepts the encodings descriptors declare: UTF-8 (also
// spelled "utf8") and, for ASCII-only files, US-ASCII and ISO-8859-1.
func charsetReader(label string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(strings.TrimSpace(label)) {
	case "utf-8", "utf8", "us-ascii", "ascii":
		return input, nil
	case "iso-8859-1", "latin1", "latin-1":
		return latin1Reader{input}, nil
	}
	return nil, fmt.Errorf("encoding %q is not supported (want UTF-8)", label)
}

// latin1Reader turns ISO-8859-1 bytes into UTF-8.
type latin1Reader struct{ r io.Reader }

func (l latin1Reader) Read(p []byte) (int, error) {
	// Each input byte becomes at most 2 output bytes.
	buf := make([]byte, len(p)/2)
	if len(buf) == 0 {
		buf = make([]byte, 1)
		if len(p) < 2 {
			// Not enough room for a 2-byte rune: read a byte only if ASCII
			// fits; callers (encoding/xml via bufio) always pass large buffers.
			n, err := l.r.Read(buf)
			if n == 1 && buf[0] < 0x80 && len(p) > 0 {
				p[0] = buf[0]
				return 1, err
			}
			return 0, io.ErrShortBuffer
		}
	}
	n, err := l.r.Read(buf)
	out := p[:0]
	for _, b := range buf[:n] {
		if b < 0x80 {
			out = append(out, b)
		} else {
			out = append(out, 0xc0|b>>6, 0x80|b&0x3f)
		}
	}
	return len(out), err
}

// lineOf is the 1-based line of byte offset off in data.
func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

// DetectDescriptor reports whether head (a file's first bytes) is an OVF
// descriptor: XML whose root is an Envelope in a DMTF OVF namespace.
func DetectDescriptor(head []byte) bool {
	h := head[:min(len(head), 4096)]
	if !bytes.Contains(h, []byte("schemas.dmtf.org/ovf/envelope/")) {
		return false
	}
	i := bytes.Index(h, []byte("Envelope"))
	return i > 0 && (h[i-1] == '<' || h[i-1] == ':')
}
