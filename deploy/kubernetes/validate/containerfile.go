package validate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Instruction is one Containerfile instruction: its keyword (upper case)
// and the rest of its (joined) lines.
type Instruction struct {
	Keyword string
	Rest    string
}

// Stage is a FROM and the instructions under it.
type Stage struct {
	From         string
	Name         string
	Instructions []Instruction
}

// Containerfile is a parsed Containerfile: its stages in order.
type Containerfile struct {
	Stages []Stage
}

// ReadContainerfile parses the instructions of a Containerfile (comments
// dropped, backslash continuations joined).
func ReadContainerfile(path string) (*Containerfile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cf := &Containerfile{}
	var cur strings.Builder
	flush := func() error {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return nil
		}
		kw, rest, _ := strings.Cut(line, " ")
		in := Instruction{Keyword: strings.ToUpper(kw), Rest: strings.TrimSpace(rest)}
		if in.Keyword == "FROM" {
			f := strings.Fields(in.Rest)
			st := Stage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			cf.Stages = append(cf.Stages, st)
			return nil
		}
		if len(cf.Stages) == 0 {
			return fmt.Errorf("%s: %s before FROM", path, in.Keyword)
		}
		st := &cf.Stages[len(cf.Stages)-1]
		st.Instructions = append(st.Instructions, in)
		return nil
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if body, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(cf.Stages) == 0 {
		return nil, fmt.Errorf("%s: no FROM", path)
	}
	return cf, nil
}

// Final is the stage the image is made of.
func (cf *Containerfile) Final() *Stage { return &cf.Stages[len(cf.Stages)-1] }

// All returns the stage's instructions of one keyword.
func (s *Stage) All(keyword string) []Instruction {
	var out []Instruction
	for _, in := range s.Instructions {
		if in.Keyword == keyword {
			out = append(out, in)
		}
	}
	return out
}

// ExecForm reads an instruction in exec form: ["a", "b"].
func (in Instruction) ExecForm() ([]string, error) {
	var v []string
	if err := json.Unmarshal([]byte(in.Rest), &v); err != nil {
		return nil, fmt.Errorf("%s %s: not in exec form: %w", in.Keyword, in.Rest, err)
	}
	return v, nil
}

// Command is a command to run: environment assignments and arguments.
type Command struct {
	Env  []string
	Args []string
}

// LocalBuild is the build stage's `go build` command with its output
// written to out instead: the same environment (CGO_ENABLED=0) and flags.
func (cf *Containerfile) LocalBuild(out string) (Command, error) {
	for _, st := range cf.Stages {
		for _, run := range st.All("RUN") {
			words, err := ShellWords(run.Rest)
			if err != nil {
				return Command{}, fmt.Errorf("RUN %s: %w", run.Rest, err)
			}
			var cmd Command
			for len(words) > 0 && strings.Contains(words[0], "=") && !strings.HasPrefix(words[0], "-") {
				cmd.Env = append(cmd.Env, words[0])
				words = words[1:]
			}
			if len(words) < 2 || words[0] != "go" || words[1] != "build" {
				continue
			}
			cmd.Args = words
			for i, w := range cmd.Args {
				if w == "-o" && i+1 < len(cmd.Args) {
					cmd.Args[i+1] = out
					return cmd, nil
				}
			}
			return Command{}, fmt.Errorf("RUN %s: no -o", run.Rest)
		}
	}
	return Command{}, errors.New("no RUN go build")
}

// ShellWords splits a shell command line into words, honouring single and
// double quotes; anything else a shell would expand (variables, globs,
// operators) is an error, since the build command must mean the same
// everywhere.
func ShellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case strings.ContainsRune("$`\\|&;<>()*?", r):
			return nil, fmt.Errorf("%q: shell syntax beyond quotes", string(r))
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, errors.New("unclosed quote")
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
