package flows_test

import (
	"testing"

	"github.com/flowbot/flowbot/flows"
)

func TestRoundMoney(t *testing.T) {
	for _, tc := range []struct {
		v        float64
		currency string
		want     float64
	}{
		{0.7880000000000006, "USD", 0.788},
		{0.1 + 0.2, "EUR", 0.3},
		{0.0040, "USD", 0.004},
		{0.00004, "USD", 0},
		{12.345678, "JPY", 12.35},
		{0.123456, "KWD", 0.12346},
		{0.123456, "", 0.1235},
	} {
		if got := flows.RoundMoney(tc.v, tc.currency); got != tc.want {
			t.Errorf("RoundMoney(%v, %q) = %v, want %v", tc.v, tc.currency, got, tc.want)
		}
	}
}
