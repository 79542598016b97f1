package xva

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
)

// XML-RPC values are kept in neutral.VM's Extensions.Xen as JSON-compatible
// values: an untyped string is a string, a boolean a bool, a struct a map, an
// array a slice, <nil/> is null, a <double> whose text is Go's shortest
// rendering a float64. The types JSON cannot tell apart are tagged objects
// with one member: {"$int": "5"}, {"$i4": …}, {"$i8": …},
// {"$double": "1.0"}, {"$dateTime.iso8601": "19700101T00:00:00Z"},
// {"$base64": …}.

func toJSON(v *Value) any {
	switch v.Kind {
	case String:
		return v.Text
	case Bool:
		return v.Text == "1"
	case Double:
		f, err := strconv.ParseFloat(v.Text, 64)
		if err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) && strconv.FormatFloat(f, 'g', -1, 64) == v.Text {
			return f
		}
		return map[string]any{"$double": v.Text}
	case Int:
		tag := v.IntTag
		if tag == "" {
			tag = "int"
		}
		return map[string]any{"$" + tag: v.Text}
	case DateTime:
		return map[string]any{"$dateTime.iso8601": v.Text}
	case Base64:
		return map[string]any{"$base64": v.Text}
	case Nil:
		return nil
	case Struct:
		m := make(map[string]any, len(v.Members))
		for i := range v.Members {
			m[v.Members[i].Name] = toJSON(&v.Members[i].Value)
		}
		return m
	case Array:
		a := make([]any, len(v.Items))
		for i := range v.Items {
			a[i] = toJSON(&v.Items[i])
		}
		return a
	}
	return nil
}

var taggedKinds = map[string]Kind{
	"$int": Int, "$i4": Int, "$i8": Int, "$double": Double,
	"$dateTime.iso8601": DateTime, "$base64": Base64,
}

// fromJSON converts back; struct members come out in sorted order (XML-RPC
// structs are unordered and xapi reads them by name).
func fromJSON(x any, path string) (Value, error) {
	switch t := x.(type) {
	case nil:
		return Value{Kind: Nil}, nil
	case string:
		return Str(t), nil
	case bool:
		return BoolValue(t), nil
	case float64:
		return Value{Kind: Double, Text: strconv.FormatFloat(t, 'g', -1, 64)}, nil
	case json.Number:
		return Value{Kind: Double, Text: t.String()}, nil
	case int:
		return Str(strconv.Itoa(t)), nil
	case int64:
		return Str(strconv.FormatInt(t, 10)), nil
	case map[string]any:
		if len(t) == 1 {
			for k, inner := range t {
				if kind, ok := taggedKinds[k]; ok {
					s, ok := inner.(string)
					if !ok {
						return Value{}, fmt.Errorf("%s: %s wants a string, got %T", path, k, inner)
					}
					v := Value{Kind: kind, Text: s}
					if kind == Int {
						v.IntTag = k[1:]
					}
					return v, nil
				}
			}
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		v := Value{Kind: Struct, Members: make([]Member, 0, len(keys))}
		for _, k := range keys {
			mv, err := fromJSON(t[k], path+"."+k)
			if err != nil {
				return Value{}, err
			}
			v.Members = append(v.Members, Member{Name: k, Value: mv})
		}
		return v, nil
	case []any:
		v := Value{Kind: Array, Items: make([]Value, 0, len(t))}
		for i, it := range t {
			iv, err := fromJSON(it, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return Value{}, err
			}
			v.Items = append(v.Items, iv)
		}
		return v, nil
	case []string:
		v := Value{Kind: Array}
		for _, s := range t {
			v.Items = append(v.Items, Str(s))
		}
		return v, nil
	case map[string]string:
		m := make(map[string]any, len(t))
		for k, s := range t {
			m[k] = s
		}
		return fromJSON(m, path)
	}
	return Value{}, fmt.Errorf("%s: %T is not a JSON value", path, x)
}

// structFromJSON converts an extensions map that must hold a struct.
func structFromJSON(x any, path string) (Value, error) {
	if x == nil {
		return Value{Kind: Struct}, nil
	}
	if _, ok := x.(map[string]any); !ok {
		return Value{}, fmt.Errorf("%s: %T, want an object", path, x)
	}
	v, err := fromJSON(x, path)
	if err != nil {
		return Value{}, err
	}
	if v.Kind != Struct {
		return Value{}, fmt.Errorf("%s: tagged scalar where an object is wanted", path)
	}
	return v, nil
}
