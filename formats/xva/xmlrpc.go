package xva

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The XML-RPC value grammar as ova.xml uses it, decoded with encoding/xml.
// A <value> holds either bare text (an untyped string: xapi writes every
// integer, enum and ref that way) or exactly one typed child.
type xmlValue struct {
	Text     string     `xml:",chardata"`
	String   *string    `xml:"string"`
	Boolean  *string    `xml:"boolean"`
	Int      *string    `xml:"int"`
	I4       *string    `xml:"i4"`
	I8       *string    `xml:"i8"`
	Double   *string    `xml:"double"`
	DateTime *string    `xml:"dateTime.iso8601"`
	Base64   *string    `xml:"base64"`
	Nil      *struct{}  `xml:"nil"`
	Struct   *xmlStruct `xml:"struct"`
	Array    *xmlArray  `xml:"array"`
	Unknown  []xmlAny   `xml:",any"`
}

type xmlAny struct {
	XMLName xml.Name
}

type xmlStruct struct {
	Members []xmlMember `xml:"member"`
}

type xmlMember struct {
	Name  string    `xml:"name"`
	Value *xmlValue `xml:"value"`
}

type xmlArray struct {
	Data struct {
		Values []xmlValue `xml:"value"`
	} `xml:"data"`
}

// Kind is the XML-RPC type of a Value.
type Kind uint8

const (
	String   Kind = iota // untyped <value>text</value> or <string>
	Bool                 // <boolean>0|1</boolean>
	Int                  // <int>, <i4>, <i8>
	Double               // <double>
	DateTime             // <dateTime.iso8601>
	Base64               // <base64>
	Nil                  // <nil/>
	Struct               // <struct>
	Array                // <array>
)

var kindTags = [...]string{String: "string", Bool: "boolean", Int: "int", Double: "double",
	DateTime: "dateTime.iso8601", Base64: "base64", Nil: "nil", Struct: "struct", Array: "array"}

func (k Kind) String() string {
	if int(k) < len(kindTags) {
		return kindTags[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Value is one decoded XML-RPC value. Scalars keep their text exactly as
// written (xapi compares rendered text, and integers are strings anyway).
type Value struct {
	Kind    Kind
	Text    string   // scalar text; for Int also the tag in IntTag
	IntTag  string   // "int", "i4" or "i8" as written
	Members []Member // Struct, in document order
	Items   []Value  // Array
}

// Member is one named member of a struct.
type Member struct {
	Name  string
	Value Value
}

// Str returns an untyped string value.
func Str(s string) Value { return Value{Kind: String, Text: s} }

// BoolValue returns a boolean value.
func BoolValue(b bool) Value {
	if b {
		return Value{Kind: Bool, Text: "1"}
	}
	return Value{Kind: Bool, Text: "0"}
}

// Get returns the member called name of a struct value.
func (v *Value) Get(name string) (*Value, bool) {
	if v == nil || v.Kind != Struct {
		return nil, false
	}
	for i := range v.Members {
		if v.Members[i].Name == name {
			return &v.Members[i].Value, true
		}
	}
	return nil, false
}

// Set replaces or appends the member called name.
func (v *Value) Set(name string, val Value) {
	for i := range v.Members {
		if v.Members[i].Name == name {
			v.Members[i].Value = val
			return
		}
	}
	v.Members = append(v.Members, Member{Name: name, Value: val})
}

// Delete removes the member called name, if present.
func (v *Value) Delete(name string) {
	for i := range v.Members {
		if v.Members[i].Name == name {
			v.Members = append(v.Members[:i], v.Members[i+1:]...)
			return
		}
	}
}

// maxValues bounds the number of values in one document, so a small file of
// nested empty arrays cannot make the decoder build a huge tree.
const maxValues = 1 << 20

func fromXML(x *xmlValue, path string, budget *int) (Value, error) {
	var v Value
	*budget--
	if *budget < 0 {
		return Value{}, fmt.Errorf("%s: more than %d values", where(path), maxValues)
	}
	if len(x.Unknown) > 0 {
		return Value{}, fmt.Errorf("%s: unknown XML-RPC type <%s>", where(path), clip(x.Unknown[0].XMLName.Local))
	}
	typed := 0
	set := func(k Kind, s *string) {
		if s != nil {
			typed++
			v.Kind, v.Text = k, *s
		}
	}
	set(String, x.String)
	set(Bool, x.Boolean)
	set(Double, x.Double)
	set(DateTime, x.DateTime)
	set(Base64, x.Base64)
	for _, it := range []struct {
		tag string
		s   *string
	}{{"int", x.Int}, {"i4", x.I4}, {"i8", x.I8}} {
		if it.s != nil {
			typed++
			v.Kind, v.Text, v.IntTag = Int, *it.s, it.tag
		}
	}
	if x.Nil != nil {
		typed++
		v.Kind = Nil
	}
	if x.Struct != nil {
		typed++
		v.Kind = Struct
		v.Members = make([]Member, 0, len(x.Struct.Members))
		for i := range x.Struct.Members {
			m := &x.Struct.Members[i]
			if m.Value == nil {
				return Value{}, fmt.Errorf("%s: member %q has no <value>", where(path), m.Name)
			}
			mv, err := fromXML(m.Value, joinPath(path, m.Name), budget)
			if err != nil {
				return Value{}, err
			}
			v.Members = append(v.Members, Member{Name: m.Name, Value: mv})
		}
	}
	if x.Array != nil {
		typed++
		v.Kind = Array
		v.Items = make([]Value, 0, len(x.Array.Data.Values))
		for i := range x.Array.Data.Values {
			iv, err := fromXML(&x.Array.Data.Values[i], fmt.Sprintf("%s[%d]", path, i), budget)
			if err != nil {
				return Value{}, err
			}
			v.Items = append(v.Items, iv)
		}
	}
	switch typed {
	case 0:
		return Value{Kind: String, Text: x.Text}, nil
	case 1:
		if strings.TrimSpace(x.Text) != "" {
			return Value{}, fmt.Errorf("%s: text %q beside a typed value", where(path), clip(x.Text))
		}
	default:
		return Value{}, fmt.Errorf("%s: <value> holds %d typed children, want one", where(path), typed)
	}
	switch v.Kind {
	case Bool:
		if v.Text != "0" && v.Text != "1" {
			return Value{}, fmt.Errorf("%s: boolean %q, want 0 or 1", where(path), clip(v.Text))
		}
	case Int:
		if _, err := strconv.ParseInt(strings.TrimSpace(v.Text), 10, 64); err != nil {
			return Value{}, fmt.Errorf("%s: <%s> %q is not an integer", where(path), v.IntTag, clip(v.Text))
		}
	case Double:
		if _, err := strconv.ParseFloat(strings.TrimSpace(v.Text), 64); err != nil {
			return Value{}, fmt.Errorf("%s: <double> %q is not a number", where(path), clip(v.Text))
		}
	}
	return v, nil
}

// where names a value for an error: its member path, or the root.
func where(path string) string {
	if path == "" {
		return "root value"
	}
	return path
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// parseValue decodes one XML-RPC document whose root element is <value>.
func parseValue(data []byte) (Value, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return Value{}, errors.New("no <value> element")
		}
		if err != nil {
			return Value{}, err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if t.Name.Local != "value" {
				return Value{}, fmt.Errorf("root element <%s>, want <value>", t.Name.Local)
			}
			var x xmlValue
			if err := d.DecodeElement(&x, &t); err != nil {
				return Value{}, err
			}
			budget := maxValues
			v, err := fromXML(&x, "", &budget)
			if err != nil {
				return Value{}, err
			}
			// Only whitespace, comments and processing instructions may follow.
			for {
				tok, err := d.Token()
				if err == io.EOF {
					return v, nil
				}
				if err != nil {
					return Value{}, err
				}
				switch t := tok.(type) {
				case xml.StartElement:
					return Value{}, fmt.Errorf("element <%s> after the root <value>", t.Name.Local)
				case xml.CharData:
					if len(bytes.TrimSpace(t)) != 0 {
						return Value{}, errors.New("text after the root <value>")
					}
				}
			}
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return Value{}, errors.New("text before the root <value>")
			}
		}
	}
}

// appendXML renders v the way Xen Orchestra does (and xapi accepts): no
// declaration, no whitespace, untyped strings.
func appendXML(b *bytes.Buffer, v *Value) {
	b.WriteString("<value>")
	switch v.Kind {
	case String:
		xmlEscape(b, v.Text)
	case Int:
		tag := v.IntTag
		if tag == "" {
			tag = "int"
		}
		b.WriteString("<" + tag + ">")
		xmlEscape(b, v.Text)
		b.WriteString("</" + tag + ">")
	case Nil:
		b.WriteString("<nil/>")
	case Struct:
		b.WriteString("<struct>")
		for i := range v.Members {
			b.WriteString("<member><name>")
			xmlEscape(b, v.Members[i].Name)
			b.WriteString("</name>")
			appendXML(b, &v.Members[i].Value)
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	case Array:
		b.WriteString("<array><data>")
		for i := range v.Items {
			appendXML(b, &v.Items[i])
		}
		b.WriteString("</data></array>")
	default:
		tag := v.Kind.String()
		b.WriteString("<" + tag + ">")
		xmlEscape(b, v.Text)
		b.WriteString("</" + tag + ">")
	}
	b.WriteString("</value>")
}

func xmlEscape(b *bytes.Buffer, s string) {
	// EscapeText also escapes \n, \r and \t, which keeps multi-line strings
	// (PV_args, recommendations) exact through a parser that normalises line ends.
	_ = xml.EscapeText(b, []byte(s))
}
