package limits_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/lumenobs/lumen/internal/limits"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestLimiter(t *testing.T) {
	for _, tc := range []struct {
		name            string
		running, queued int
		// held requests are admitted first and kept; then one more asks,
		// with the context below.
		held    int
		timeout time.Duration
		cancel  bool
		wantErr error
	}{
		{name: "admits while under the bound", running: 2, queued: 0, held: 1},
		{name: "no queue: past the bound at once", running: 2, queued: 0, held: 2, timeout: time.Hour, wantErr: limits.ErrBusy},
		{name: "queue full: turned away at once", running: 1, queued: 1, held: 2, timeout: time.Hour, wantErr: limits.ErrBusy},
		{name: "deadline passes while queued", running: 1, queued: 1, held: 1, timeout: 50 * time.Millisecond, wantErr: limits.ErrBusy},
		{name: "client leaves while queued", running: 1, queued: 1, held: 1, cancel: true, wantErr: context.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := limits.New("queries", tc.running, tc.queued)
			var releases []func()
			defer func() {
				for _, r := range releases {
					r()
				}
			}()
			for range tc.held {
				// The held ones beyond the running bound wait in the queue.
				ch := make(chan func(), 1)
				go func() {
					r, err := l.Acquire(context.Background())
					if err == nil {
						ch <- r
					}
				}()
				select {
				case r := <-ch:
					releases = append(releases, r)
				case <-time.After(50 * time.Millisecond):
					releases = append(releases, func() { (<-ch)() })
				}
			}
			ctx := context.Background()
			var cancel context.CancelFunc = func() {}
			if tc.timeout > 0 {
				ctx, cancel = context.WithTimeout(ctx, tc.timeout)
			}
			if tc.cancel {
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(50*time.Millisecond, cancel)
			}
			defer cancel()
			start := time.Now()
			release, err := l.Acquire(ctx)
			if tc.wantErr != nil {
				require.ErrorIs(t, err, tc.wantErr)
				require.Less(t, time.Since(start), 5*time.Second)
				return
			}
			require.NoError(t, err)
			release()
			release() // a second call frees nothing more
			require.Equal(t, tc.held, l.Running())
		})
	}
}

func TestLimiterQueuedRequestRunsOnceASlotFrees(t *testing.T) {
	l := limits.New("searches", 1, 1)
	first, err := l.Acquire(context.Background())
	require.NoError(t, err)
	got := make(chan error, 1)
	go func() {
		r, err := l.Acquire(context.Background())
		if err == nil {
			defer r()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("admitted while the slot was held: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	first()
	select {
	case err := <-got:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("the queued request was not admitted after the slot freed")
	}
}

func TestNilLimiterAdmitsEverything(t *testing.T) {
	var l *limits.Limiter
	release, err := l.Acquire(context.Background())
	require.NoError(t, err)
	release()
	require.Zero(t, l.Running())
}
