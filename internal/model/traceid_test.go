package model_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lumenobs/lumen/internal/model"
)

func TestParseTraceID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "lowercase", in: "0102030405060708090a0b0c0d0e0f10", want: "0102030405060708090a0b0c0d0e0f10"},
		{name: "uppercase is folded", in: "0102030405060708090A0B0C0D0E0F10", want: "0102030405060708090a0b0c0d0e0f10"},
		{name: "mixed case", in: "AbCdEf0123456789aBcDeF0123456789", want: "abcdef0123456789abcdef0123456789"},
		{name: "too short", in: "0102", wantErr: "want 32 hex characters, got 4"},
		{name: "too long", in: strings.Repeat("a", 33), wantErr: "got 33"},
		{name: "empty", in: "", wantErr: "got 0"},
		{name: "not hex", in: "0102030405060708090a0b0c0d0e0f1g", wantErr: `character 'g' at position 31`},
		{name: "all zeros", in: strings.Repeat("0", 32), wantErr: "all zeros"},
		{name: "64-bit jaeger id is not accepted", in: "0102030405060708", wantErr: "got 16"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := model.ParseTraceID(tc.in)
			if tc.wantErr != "" {
				require.Error(t, err)
				require.True(t, errors.Is(err, model.ErrInvalidTraceID))
				require.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, id.String())
		})
	}
}

func FuzzParseTraceID(f *testing.F) {
	for _, s := range []string{"0102030405060708090a0b0c0d0e0f10", "ABCDEF0123456789ABCDEF0123456789", "", "zz", strings.Repeat("0", 32)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := model.ParseTraceID(s)
		if err != nil {
			require.ErrorIs(t, err, model.ErrInvalidTraceID)
			return
		}
		// Anything accepted round-trips to its lowercase form.
		require.Equal(t, strings.ToLower(s), id.String())
		again, err := model.ParseTraceID(id.String())
		require.NoError(t, err)
		require.Equal(t, id, again)
	})
}
