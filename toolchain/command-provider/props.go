package main

// Reading and writing the property maps that the engine sends: secrets, unknowns, assets and
// archives are kept as they came (KeepSecrets, KeepUnknowns), so that outputs can echo inputs
// without losing what is secret. Values are only unwrapped (plain) to be read.

import (
	"fmt"
	"math"
	"sort"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"google.golang.org/protobuf/types/known/structpb"
)

var wireOptions = plugin.MarshalOptions{
	KeepUnknowns:  true,
	KeepSecrets:   true,
	KeepResources: true,
	SkipNulls:     true,
}

// unmarshal turns a wire Struct into a PropertyMap; a nil Struct is an empty map.
func unmarshal(s *structpb.Struct, label string) (resource.PropertyMap, error) {
	if s == nil {
		return resource.PropertyMap{}, nil
	}
	opts := wireOptions
	opts.Label = label
	m, err := plugin.UnmarshalProperties(s, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return m, nil
}

func marshal(m resource.PropertyMap, label string) (*structpb.Struct, error) {
	opts := wireOptions
	opts.Label = label
	return plugin.MarshalProperties(m, opts)
}

// plain is v with any secret wrappers around it removed (not the ones nested inside it).
func plain(v resource.PropertyValue) resource.PropertyValue {
	for v.IsSecret() {
		v = v.SecretValue().Element
	}
	return v
}

// lookup returns the plain value of key and whether it is set (present and not null).
func lookup(m resource.PropertyMap, key string) (resource.PropertyValue, bool) {
	v, ok := m[resource.PropertyKey(key)]
	if !ok {
		return resource.PropertyValue{}, false
	}
	v = plain(v)
	if v.IsNull() {
		return v, false
	}
	return v, true
}

func unknownError(key string) error {
	return fmt.Errorf("%s: the value is not known yet", key)
}

// optString reads an optional string property.
func optString(m resource.PropertyMap, key string) (string, bool, error) {
	v, ok := lookup(m, key)
	switch {
	case !ok:
		return "", false, nil
	case v.IsComputed():
		return "", false, unknownError(key)
	case !v.IsString():
		return "", false, fmt.Errorf("%s: expected a string, got %s", key, v.TypeString())
	}
	return v.StringValue(), true, nil
}

// optInt reads an optional whole-number property (numbers travel as float64).
func optInt(m resource.PropertyMap, key string, def int) (int, error) {
	v, ok := lookup(m, key)
	switch {
	case !ok:
		return def, nil
	case v.IsComputed():
		return 0, unknownError(key)
	case !v.IsNumber():
		return 0, fmt.Errorf("%s: expected a number, got %s", key, v.TypeString())
	}
	f := v.NumberValue()
	if f != math.Trunc(f) || math.Abs(f) > 1<<31 {
		return 0, fmt.Errorf("%s: expected a whole number, got %v", key, f)
	}
	return int(f), nil
}

func optBool(m resource.PropertyMap, key string, def bool) (bool, error) {
	v, ok := lookup(m, key)
	switch {
	case !ok:
		return def, nil
	case v.IsComputed():
		return false, unknownError(key)
	case !v.IsBool():
		return false, fmt.Errorf("%s: expected a boolean, got %s", key, v.TypeString())
	}
	return v.BoolValue(), nil
}

func optStringList(m resource.PropertyMap, key string) ([]string, error) {
	v, ok := lookup(m, key)
	switch {
	case !ok:
		return nil, nil
	case v.IsComputed():
		return nil, unknownError(key)
	case !v.IsArray():
		return nil, fmt.Errorf("%s: expected a list of strings, got %s", key, v.TypeString())
	}
	var out []string
	for i, item := range v.ArrayValue() {
		item = plain(item)
		if !item.IsString() {
			return nil, fmt.Errorf("%s[%d]: expected a string, got %s", key, i, item.TypeString())
		}
		out = append(out, item.StringValue())
	}
	return out, nil
}

// envVar is one environment variable; lists of them are sorted by name.
type envVar struct{ Name, Value string }

func optStringMap(m resource.PropertyMap, key string) ([]envVar, error) {
	v, ok := lookup(m, key)
	switch {
	case !ok:
		return nil, nil
	case v.IsComputed():
		return nil, unknownError(key)
	case !v.IsObject():
		return nil, fmt.Errorf("%s: expected a map of strings, got %s", key, v.TypeString())
	}
	var out []envVar
	for name, item := range v.ObjectValue() {
		item = plain(item)
		if item.IsNull() {
			continue
		}
		if !item.IsString() {
			return nil, fmt.Errorf("%s.%s: expected a string, got %s", key, name, item.TypeString())
		}
		out = append(out, envVar{string(name), item.StringValue()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// isSecret reports whether the property is a secret or holds one.
func isSecret(m resource.PropertyMap, key string) bool {
	v, ok := m[resource.PropertyKey(key)]
	return ok && v.ContainsSecrets()
}
