package server_test

import (
	"testing"

	"github.com/flowbot/flowbot/server"
)

// The default instance id holds the listen address: two instances on one
// host are apart, and a restart on the same address is the same id.
func TestDefaultInstanceIDHoldsTheAddress(t *testing.T) {
	a, b := server.DefaultInstanceID(":8080"), server.DefaultInstanceID(":8081")
	if a == b {
		t.Fatalf("two ports on one host share the id %q", a)
	}
	if again := server.DefaultInstanceID(":8080"); again != a {
		t.Fatalf("a restart on :8080 is %q, then %q", a, again)
	}
	if c := server.DefaultInstanceID("10.0.0.5:8080"); c == a {
		t.Fatalf("two interfaces share the id %q", c)
	}
}
