package mongo

import (
	"strconv"
	"testing"

	"go.mongodb.org/mongo-driver/v2/x/mongo/driver/connstring"
)

// TestWriteConcern: writes wait for a majority unless the connection
// string says otherwise.
func TestWriteConcern(t *testing.T) {
	for uri, want := range map[string]string{
		"mongodb://db1,db2/flowbot?replicaSet=rs0":      "majority",
		"mongodb://db1/flowbot?w=1":                     "1",
		"mongodb://db1/flowbot?w=majority&wtimeoutMS=5": "majority",
	} {
		cs, err := connstring.ParseAndValidate(uri)
		if err != nil {
			t.Fatal(err)
		}
		o := clientOptions(cs, uri)
		if o.WriteConcern == nil {
			t.Fatalf("%s: no write concern", uri)
		}
		if got := toString(o.WriteConcern.W); got != want {
			t.Fatalf("%s: w = %s, want %s", uri, got, want)
		}
	}
}

func toString(w any) string {
	switch w := w.(type) {
	case string:
		return w
	case int:
		return strconv.Itoa(w)
	}
	return "?"
}
