package migrations

import "strings"

// SplitStatements splits SQL text into statements on top-level semicolons, skipping comments
// and respecting quotes and dollar quoting. Each statement keeps its semicolon; line comments
// are dropped, block comments kept. It serves tests and tools that must see what a file sends,
// not the migrations themselves (those are sent whole).
func SplitStatements(sql string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if s := strings.TrimSpace(cur.String()); s != "" {
			out = append(out, s)
		}
		cur.Reset()
	}
	for i := 0; i < len(sql); i++ {
		c := sql[i]
		switch {
		case c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
			cur.WriteByte('\n')
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*':
			end := strings.Index(sql[i+2:], "*/")
			if end < 0 {
				cur.WriteString(sql[i:])
				i = len(sql)
				break
			}
			cur.WriteString(sql[i : i+2+end+2])
			i += 2 + end + 1
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(sql) {
				if sql[j] == c {
					if j+1 < len(sql) && sql[j+1] == c { // doubled quote
						j += 2
						continue
					}
					break
				}
				j++
			}
			cur.WriteString(sql[i:min(j+1, len(sql))])
			i = j
		case c == '$':
			// $tag$ ... $tag$ (tag may be empty); a $1 placeholder is not a quote.
			end := strings.IndexByte(sql[i+1:], '$')
			tag := ""
			if end >= 0 {
				tag = sql[i : i+1+end+1]
			}
			if tag == "" || strings.IndexFunc(tag[1:len(tag)-1], func(r rune) bool {
				return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
			}) >= 0 {
				cur.WriteByte(c)
				break
			}
			close := strings.Index(sql[i+len(tag):], tag)
			if close < 0 {
				cur.WriteString(sql[i:])
				i = len(sql)
				break
			}
			stop := i + len(tag) + close + len(tag)
			cur.WriteString(sql[i:stop])
			i = stop - 1
		case c == ';':
			cur.WriteByte(c)
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return out
}
