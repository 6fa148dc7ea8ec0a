package material

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: a source's watcher and loop
// stop on Close.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
