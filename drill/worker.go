package drill

import (
	"context"
	"errors"
)

// workerPool runs members as worker processes.
type workerPool struct{}

func (w *workerPool) stop() {}

func (d *run) startWorkers(context.Context) error {
	return errors.New("drill: --processes is not available yet")
}
