package drill

import (
	"testing"
	"time"
)

// Every check runs whatever the others find: more waves than clients is
// clamped, not a reason to skip the duration check.
func TestConfigChecksAll(t *testing.T) {
	c, err := Config{Clients: 2, Waves: 500}.withDefaults()
	if err != nil || c.Waves != 2 {
		t.Fatalf("waves %d, err %v; want 2, nil", c.Waves, err)
	}
	for _, bad := range []Config{
		{Clients: 2, Waves: 500, Steady: -time.Second},
		{Clients: 2, Waves: 500, Pause: -time.Second},
		{Clients: 2, Waves: 500, RequestTimeout: -time.Second},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
}
