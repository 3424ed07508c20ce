package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets, from the YAML file at path, every flag the command
// line did not set: keys are the long flag names, a list gives a repeated
// flag (node, cert, key). Flags given on the command line win. An unknown key
// or a bad value is an error naming the file and the key.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("--config %s: %w", path, err)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		if fs.Lookup(key) == nil || key == "config" {
			return fmt.Errorf("--config %s: unknown key %q (keys are the long flag names)", path, key)
		}
		if onCommandLine[key] {
			continue
		}
		values := []any{doc[key]}
		if list, ok := doc[key].([]any); ok {
			values = list
		}
		for _, v := range values {
			s, err := scalar(v)
			if err == nil {
				err = fs.Set(key, s)
			}
			if err != nil {
				return fmt.Errorf("--config %s: %s: %w", path, key, err)
			}
		}
	}
	return nil
}

// scalar renders one YAML value as the flag text it stands for.
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, int, int64, uint64, float64:
		return strings.TrimSpace(fmt.Sprint(v)), nil
	case map[string]any:
		// node: {CB_Server_1: http://…} reads as NAME=URL pairs.
		if len(v) == 1 {
			for k, u := range v {
				return k + "=" + fmt.Sprint(u), nil
			}
		}
	}
	return "", fmt.Errorf("value %v is not a scalar", v)
}
