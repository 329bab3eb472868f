package flows

import (
	"math"
	"strings"
)

// minorUnits are the currencies whose minor unit is not a hundredth
// (ISO 4217): none, or a thousandth.
var minorUnits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
	"UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

// RoundMoney rounds an amount to the currency's minor unit and two more
// digits (0.0040 USD, a per-message price, is kept; 0.7880000000000006
// is 0.788), as the API and the events show money.
func RoundMoney(v float64, currency string) float64 {
	digits, ok := minorUnits[strings.ToUpper(currency)]
	if !ok {
		digits = 2
	}
	p := math.Pow10(digits + 2)
	return math.Round(v*p) / p
}
