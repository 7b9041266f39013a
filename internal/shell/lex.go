package shell

import (
	"errors"
	"strings"
)

// errUnterminatedQuote means a line ends inside a quoted string.
var errUnterminatedQuote = errors.New("shell: unterminated quote; close it with the same quote character")

// splitLine splits one input line into statements separated by ';' and
// each statement into words. Words may be quoted with '...' (taken
// literally) or "..." (where \" and \\ are escapes); outside quotes a
// backslash escapes the next character and '#' starts a comment. Empty
// statements are dropped.
func splitLine(line string) ([][]string, error) {
	var (
		stmts  [][]string
		words  []string
		cur    strings.Builder
		inWord bool
	)
	endWord := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	endStmt := func() {
		endWord()
		if len(words) > 0 {
			stmts = append(stmts, words)
			words = nil
		}
	}
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case r == '\'':
			inWord = true
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				cur.WriteRune(rs[j])
				j++
			}
			if j == len(rs) {
				return nil, errUnterminatedQuote
			}
			i = j
		case r == '"':
			inWord = true
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && (rs[j+1] == '"' || rs[j+1] == '\\') {
					j++
				}
				cur.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, errUnterminatedQuote
			}
			i = j
		case r == '\\':
			inWord = true
			if i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			}
		case r == ';':
			endStmt()
		case r == '#' && !inWord:
			endStmt()
			return stmts, nil
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			endWord()
		default:
			inWord = true
			cur.WriteRune(r)
		}
	}
	endStmt()
	return stmts, nil
}
