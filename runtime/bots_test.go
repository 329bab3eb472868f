package runtime

import (
	"fmt"
	"testing"

	"github.com/flowbot/flowbot/engine"
)

// A server reloaded many times keeps a bounded number of engines: the
// current version always, then those used most lately.
func TestEnginesKeptAreBounded(t *testing.T) {
	var v engines
	e := &engine.Engine{}
	v.put("v0", e, "v0")
	for i := 1; i <= 3*versionsKept; i++ {
		if _, ok := v.get("v1"); i > 1 && !ok {
			t.Fatalf("after %d reloads the version in use was dropped", i)
		}
		v.put(fmt.Sprint("v", i), e, fmt.Sprint("v", i))
	}
	if n := v.len(); n != versionsKept {
		t.Fatalf("%d engines kept, want %d", n, versionsKept)
	}
	current := fmt.Sprint("v", 3*versionsKept)
	if _, ok := v.get(current); !ok {
		t.Fatal("the current version was dropped")
	}
	if _, ok := v.get("v0"); ok {
		t.Fatal("a version nobody used since was kept")
	}
}
