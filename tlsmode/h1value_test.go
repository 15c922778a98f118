package tlsmode

import "testing"

// headerValue trims a value and turns CR and LF into spaces, as net/http
// writes one: a value can never end a field line early.
func TestHeaderValue(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"  padded \t":     "padded",
		"a\r\nX-Evil: 1":  "a  X-Evil: 1",
		"lf\nonly":        "lf only",
		" cr\rthen\n end": "cr then  end",
		"":                "",
	} {
		if got := headerValue(in); got != want {
			t.Errorf("headerValue(%q) = %q; want %q", in, got, want)
		}
	}
}
