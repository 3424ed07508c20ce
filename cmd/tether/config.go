package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tether-lb/tether/pool"
	"go.yaml.in/yaml/v3"
)

// applyConfigFile sets, from the YAML file at path, every flag the command
// line did not set: keys are the long flag names, a list gives a repeated
// flag (node, cert, key). Flags given on the command line win. An unknown key,
// a list or a map for a flag that takes one value, or a bad value is an error
// naming the file, the key and the value.
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
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			return fmt.Errorf("--config %s: unknown key %q (keys are the long flag names)", path, key)
		}
		if onCommandLine[key] {
			continue
		}
		repeated := isRepeated(f)
		values := []any{doc[key]}
		if list, ok := doc[key].([]any); ok {
			if !repeated {
				return fmt.Errorf("--config %s: %s: expected one %s, got a list", path, key, valueName(f))
			}
			values = list
		}
		for _, v := range values {
			s, err := scalar(v, repeated)
			if err == nil {
				if err = fs.Set(key, s); err != nil {
					err = badValue(f, s, err)
				}
			}
			if err != nil {
				return fmt.Errorf("--config %s: %s: %w", path, key, err)
			}
		}
	}
	return nil
}

// isRepeated reports whether a flag may be given more than once (node,
// cert, key, admin-hosts): its value is a list. The flag package's own
// values (string, int, duration, bool...) are flag.Getters holding one
// value, and so are tether's scalar ones (onOff); the repeated ones are not.
func isRepeated(f *flag.Flag) bool {
	_, one := f.Value.(flag.Getter)
	return !one
}

// valueName names what a flag takes, for errors: its usage's placeholder
// ("address", "file") or its kind.
func valueName(f *flag.Flag) string {
	switch name, _ := flag.UnquoteUsage(f); name {
	case "", "string", "value":
		return "value"
	case "int", "uint":
		return "number"
	default:
		return name
	}
}

// badValue says what was wrong with a value that a flag refused: the flag
// package's own words are only "parse error".
func badValue(f *flag.Flag, value string, err error) error {
	if _, ok := f.Value.(*onOff); !ok {
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case time.Duration:
				return fmt.Errorf("%q is not a duration (such as 10s, 1m30s)", value)
			case int, int64, uint, uint64:
				if strings.Contains(err.Error(), "range") {
					return fmt.Errorf("%q is out of range", value)
				}
				return fmt.Errorf("%q is not a whole number", value)
			case float64:
				return fmt.Errorf("%q is not a number", value)
			case bool:
				return fmt.Errorf("%q is not true or false", value)
			}
		}
	}
	if q := strconv.Quote(value); !strings.Contains(err.Error(), q) {
		return fmt.Errorf("%s: %w", q, err)
	}
	return err
}

// scalar renders one YAML value as the flag text it stands for. A map is
// read only for a repeated flag: node: {CB_Server_1: http://…} as a NAME=URL
// pair.
func scalar(v any, repeated bool) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case bool, int, int64, uint64, float64:
		return strings.TrimSpace(fmt.Sprint(v)), nil
	case map[string]any:
		if !repeated {
			return "", errors.New("expected one value, got a map")
		}
		if len(v) == 1 {
			for k, u := range v {
				return k + "=" + fmt.Sprint(u), nil
			}
		}
	}
	return "", fmt.Errorf("value %v is not a scalar", v)
}

// flagError rewrites the flag package's "invalid value "lots" for flag
// -max-conns: parse error" as `--max-conns: "lots" is not a whole number`.
// Other errors pass as they are.
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	rest, ok := strings.CutPrefix(msg, "invalid value ")
	if !ok {
		if rest, ok = strings.CutPrefix(msg, "invalid boolean value "); !ok {
			return err
		}
	}
	q, qerr := strconv.QuotedPrefix(rest)
	if qerr != nil {
		return err
	}
	value, _ := strconv.Unquote(q)
	rest = rest[len(q):]
	if rest, ok = strings.CutPrefix(rest, " for flag -"); !ok {
		if rest, ok = strings.CutPrefix(rest, " for -"); !ok {
			return err
		}
	}
	name, why, _ := strings.Cut(rest, ": ")
	f := fs.Lookup(name)
	if f == nil {
		return err
	}
	return fmt.Errorf("--%s: %w", name, badValue(f, value, errors.New(why)))
}

// redacted is err with the password of any URL in its text redacted
// (pool.RedactURLs); flag.ErrHelp stays itself.
func redacted(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	if msg := pool.RedactURLs(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}
