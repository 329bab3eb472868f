package memory_test

import (
	"testing"

	"github.com/flowbot/flowbot/store"
	"github.com/flowbot/flowbot/store/memory"
	"github.com/flowbot/flowbot/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Store { return memory.New() })
}
