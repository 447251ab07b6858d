package k8s_test

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The image's structure is checked here, next to the manifests that run it, because no Docker
// engine exists where the tests run. The parser covers the Dockerfile subset this repository
// uses: line continuations, comments, parser directives, FROM [--platform=..] image [AS name].

// instruction is one Dockerfile instruction after line continuations are joined.
type instruction struct {
	Line int
	Cmd  string // upper-cased keyword
	Args string
}

// stage is a FROM and the instructions up to the next FROM.
type stage struct {
	Image, Name string
	Body        []instruction
}

func parseDockerfile(src string) ([]instruction, error) {
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, raw := range strings.Split(src, "\n") {
		line := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue // blank, comment or parser directive
		}
		if cur.Len() > 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue // Docker drops comments and blank lines inside a continued instruction too
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(line)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		cmd, args, _ := strings.Cut(text, " ")
		out = append(out, instruction{start, strings.ToUpper(cmd), strings.TrimSpace(args)})
	}
	if cur.Len() > 0 {
		return nil, fmt.Errorf("line %d: continuation runs off the end of the file", start)
	}
	return out, nil
}

func stages(ins []instruction) []stage {
	var out []stage
	for _, in := range ins {
		if in.Cmd == "FROM" {
			var fields []string
			for _, f := range strings.Fields(in.Args) {
				if !strings.HasPrefix(f, "--") {
					fields = append(fields, f)
				}
			}
			s := stage{}
			if len(fields) > 0 {
				s.Image = fields[0]
			}
			if len(fields) == 3 && strings.EqualFold(fields[1], "AS") {
				s.Name = fields[2]
			}
			out = append(out, s)
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].Body = append(out[len(out)-1].Body, in)
		}
	}
	return out
}

var secretLike = regexp.MustCompile(`(?i)(KEY|SECRET|PASSWORD|PASSWD|TOKEN|PEPPER|CREDENTIAL)`)

// checkDockerfile returns every way src departs from the image rules of the deployment issue.
func checkDockerfile(src string) []string {
	var ps []string
	add := func(format string, args ...any) { ps = append(ps, fmt.Sprintf(format, args...)) }
	ins, err := parseDockerfile(src)
	if err != nil {
		return []string{err.Error()}
	}
	st := stages(ins)
	if len(st) < 2 {
		add("%d stage(s): want a build stage and a separate runtime stage", len(st))
		if len(st) == 0 {
			return ps
		}
	}
	var names []string
	for _, s := range st {
		if !slices.Contains(names, s.Image) && !imagePinned(s.Image) {
			add("FROM %s: pin the base image by version tag or digest, never latest or untagged", s.Image)
		}
		if s.Name != "" {
			names = append(names, s.Name)
		}
	}
	final := st[len(st)-1]
	if !strings.HasPrefix(final.Image, "gcr.io/distroless/") {
		add("final stage FROM %s: want a gcr.io/distroless image (no shell, no package manager)", final.Image)
	}

	var user, entrypoint, cmd string
	var exposed []string
	for _, in := range final.Body {
		switch in.Cmd {
		case "USER":
			user = in.Args
		case "ENTRYPOINT":
			entrypoint = in.Args
		case "CMD":
			cmd = in.Args
		case "EXPOSE":
			for _, p := range strings.Fields(in.Args) {
				exposed = append(exposed, strings.TrimSuffix(p, "/tcp"))
			}
		case "RUN":
			add("line %d: RUN in the final stage needs a shell the runtime image must not have", in.Line)
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	if uid == "" || uid == "0" || uid == "root" {
		add("final stage USER %q: want a non-root user (65532 in distroless)", user)
	}
	var argv []string
	if err := json.Unmarshal([]byte(entrypoint), &argv); err != nil || len(argv) == 0 {
		add("ENTRYPOINT %q: want exec form, a JSON array, so the binary is PID 1 and gets SIGTERM", entrypoint)
	} else if argv[0] != "/7awel" {
		add("ENTRYPOINT runs %s, want /7awel", argv[0])
	}
	var cmdv []string
	if err := json.Unmarshal([]byte(cmd), &cmdv); err != nil || !slices.Equal(cmdv, []string{"serve"}) {
		add("CMD %q: want [\"serve\"] in exec form", cmd)
	}
	for _, p := range []string{"8080", "9090"} {
		if !slices.Contains(exposed, p) {
			add("final stage does not EXPOSE %s", p)
		}
	}

	var build strings.Builder
	versionArg := false
	for _, s := range st[:len(st)-1] {
		for _, in := range s.Body {
			if in.Cmd == "RUN" || in.Cmd == "ENV" {
				build.WriteString(in.Args + "\n")
			}
		}
	}
	for _, s := range st {
		for _, in := range s.Body {
			if in.Cmd != "ENV" && in.Cmd != "ARG" {
				continue
			}
			for _, kv := range strings.Fields(in.Args) {
				k, v, hasValue := strings.Cut(kv, "=")
				if in.Cmd == "ARG" && k == "VERSION" {
					versionArg = true
				}
				if secretLike.MatchString(k) {
					if hasValue && v != "" {
						add("line %d: %s %s bakes a secret-looking value into the image", in.Line, in.Cmd, k)
					} else {
						add("line %d: %s %s passes a secret through the build; build args are visible in the image history", in.Line, in.Cmd, k)
					}
				}
			}
		}
	}
	b := build.String()
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-X main.version=", "go build"} {
		if !strings.Contains(b, want) {
			add("the build stage does not use %s", want)
		}
	}
	if !versionArg {
		add("no ARG VERSION to stamp the release into the binary")
	}
	copied := slices.ContainsFunc(final.Body, func(in instruction) bool {
		return in.Cmd == "COPY" && strings.Contains(in.Args, "--from=") && strings.HasSuffix(in.Args, " /7awel")
	})
	if !copied {
		add("the final stage does not COPY --from the build stage to /7awel")
	}
	return ps
}

func TestDockerfile(t *testing.T) {
	src, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range checkDockerfile(string(src)) {
		t.Error(p)
	}
}

func TestDockerignoreKeepsSecretsOut(t *testing.T) {
	src, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Fields(string(src))
	for _, want := range []string{".git", ".env", "**/*.key"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore does not exclude %s", want)
		}
	}
}

// TestDockerfileChecksCatchBreakage feeds a Dockerfile that breaks every rule and expects each
// rule to say so.
func TestDockerfileChecksCatchBreakage(t *testing.T) {
	bad := `# a single-stage image with a shell, run as root
FROM golang:latest
ENV JWT_SIGNING_KEY=abc123
ARG DB_PASSWORD
RUN go build -o /7awel . && \
    echo done
USER root
EXPOSE 8080
ENTRYPOINT /7awel serve
`
	ps := checkDockerfile(bad)
	for _, want := range []string{
		"stage(s)", "pin the base image", "distroless", "RUN in the final stage", "non-root user",
		"exec form", "EXPOSE 9090", "JWT_SIGNING_KEY bakes", "DB_PASSWORD passes", "CGO_ENABLED=0",
		"-trimpath", "ARG VERSION", "COPY --from",
	} {
		if !slices.ContainsFunc(ps, func(p string) bool { return strings.Contains(p, want) }) {
			t.Errorf("no problem mentioning %q in %q", want, ps)
		}
	}

	ins, err := parseDockerfile("RUN a \\\n  # note\n  b\nUSER 1:1\n")
	if err != nil || len(ins) != 2 || ins[0].Args != "a    b" || ins[1].Line != 4 {
		t.Errorf("continuations: got %+v, %v", ins, err)
	}
	if _, err := parseDockerfile("RUN a \\\n"); err == nil {
		t.Error("a dangling continuation parsed without error")
	}
}
