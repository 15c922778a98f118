package affinity

import (
	"errors"
	"testing"
)

func TestParseMode(t *testing.T) {
	tests := []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"", None, false},
		{"none", None, false},
		{"source_ip", SourceIP, false},
		{"class_c", ClassC, false},
		{"five_tuple", FiveTuple, false},
		{"Source_IP", None, true},
		{"sourceip", None, true},
		{"roundrobin", None, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseMode(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseMode(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrUnknownMode) {
					t.Errorf("errors.Is(%v, ErrUnknownMode) = false; want true", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
			if tt.in != "" && got.String() != tt.in {
				t.Errorf("String() got %q; want %q", got.String(), tt.in)
			}
		})
	}
	if got, want := Mode(9).String(), "Mode(9)"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
	_, err := ParseMode("x")
	if got, want := err.Error(), `affinity: unknown affinity mode "x": use none, source_ip, class_c or five_tuple`; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

func TestParseBalance(t *testing.T) {
	tests := []struct {
		in      string
		want    Balance
		wantErr bool
	}{
		{"", RoundRobin, false},
		{"roundrobin", RoundRobin, false},
		{"leastconn", LeastConn, false},
		{"random", Random, false},
		{"round_robin", RoundRobin, true},
		{"LeastConn", RoundRobin, true},
		{"source_ip", RoundRobin, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseBalance(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseBalance(%q) error = %v; want error %v", tt.in, err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrUnknownBalance) {
					t.Errorf("errors.Is(%v, ErrUnknownBalance) = false; want true", err)
				}
				return
			}
			if got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
			if tt.in != "" && got.String() != tt.in {
				t.Errorf("String() got %q; want %q", got.String(), tt.in)
			}
		})
	}
	if got, want := Balance(7).String(), "Balance(7)"; got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}
