package proxy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Refusals of admission; the client gets 503 and Retry-After.
var (
	errBusy         = errors.New("proxy busy: too many concurrent uploads")
	errUserBusy     = errors.New("too many uploads in progress for this user")
	errQueueTimeout = errors.New("proxy busy: no upload slot came free in time")
	errClosed       = errors.New("proxy is shutting down")
)

// admission hands out the proxy's PUT slots (one block buffer each) fairly
// among users, a user being the owner of the token. A user holds at most
// perUser slots and has at most queuedPerUser more PUTs waiting; at most
// maxQueued wait in all, each for at most timeout. A freed slot goes to the
// waiting users in turn (round robin; each user's PUTs in arrival order),
// skipping users at their own limit. So one identity, however many
// connections it opens and however slowly it sends, holds at most perUser
// slots, and the others are served from the rest at once.
//
// Invariant: while a slot is free, no waiter could take it (each waiting
// user is at its perUser limit), so a newcomer that may take a free slot
// takes it at once.
type admission struct {
	perUser, maxQueued, queuedPerUser int
	timeout                           time.Duration

	mu      sync.Mutex
	free    int
	running int
	queued  int
	users   map[string]*userSlots // users with a running or waiting PUT
	turn    []*userSlots          // users with waiters, next to be served first
	closed  bool
	changed func(running, queued int) // called under mu after each change; metrics
}

type userSlots struct {
	name    string
	running int
	waiting []chan error // each buffered 1: nil = slot granted, else the refusal
}

func newAdmission(slots, perUser, maxQueued, queuedPerUser int, timeout time.Duration) *admission {
	return &admission{
		perUser: perUser, maxQueued: maxQueued, queuedPerUser: queuedPerUser, timeout: timeout,
		free: slots, users: map[string]*userSlots{}, changed: func(int, int) {},
	}
}

// acquire takes a slot for user, waiting in the queue if it must. It
// returns nil, or errBusy, errUserBusy, errQueueTimeout, errClosed or the
// context's error; only after nil must the caller release.
func (a *admission) acquire(ctx context.Context, user string) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return errClosed
	}
	u := a.users[user]
	if u == nil {
		u = &userSlots{name: user}
		a.users[user] = u
	}
	if u.running < a.perUser && a.free > 0 {
		u.running++
		a.running++
		a.free--
		a.notify()
		a.mu.Unlock()
		return nil
	}
	if len(u.waiting) >= a.queuedPerUser || a.queued >= a.maxQueued {
		err := errBusy
		if u.running >= a.perUser {
			err = fmt.Errorf("%w (%d running, %d waiting)", errUserBusy, u.running, len(u.waiting))
		}
		a.forget(u)
		a.mu.Unlock()
		return err
	}
	ready := make(chan error, 1)
	u.waiting = append(u.waiting, ready)
	if len(u.waiting) == 1 {
		a.turn = append(a.turn, u)
	}
	a.queued++
	a.notify()
	a.mu.Unlock()

	timer := time.NewTimer(a.timeout)
	defer timer.Stop()
	var cause error
	select {
	case err := <-ready:
		return err
	case <-timer.C:
		cause = fmt.Errorf("%w (waited %v)", errQueueTimeout, a.timeout)
	case <-ctx.Done():
		cause = fmt.Errorf("wait for an upload slot: %w", ctx.Err())
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if errors.Is(cause, errQueueTimeout) && u.running >= a.perUser {
		cause = fmt.Errorf("%w (waited %v: this user's %d uploads in progress are its share)", errQueueTimeout, a.timeout, u.running)
	}
	if i := slices.Index(u.waiting, ready); i >= 0 {
		u.waiting = slices.Delete(u.waiting, i, i+1)
		a.queued--
		if len(u.waiting) == 0 {
			a.turn = slices.DeleteFunc(a.turn, func(x *userSlots) bool { return x == u })
		}
		a.forget(u)
		a.notify()
		return cause
	}
	// Granted (or refused by close) just as the wait ended: take that.
	return <-ready
}

// release gives back a slot of user and hands it on.
func (a *admission) release(user string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.users[user]
	u.running--
	a.running--
	a.free++
	a.dispatch()
	a.forget(u)
	a.notify()
}

// dispatch grants free slots to waiters, the users in turn. a.mu is held.
func (a *admission) dispatch() {
	for a.free > 0 {
		i := slices.IndexFunc(a.turn, func(u *userSlots) bool { return u.running < a.perUser })
		if i < 0 {
			return // every waiting user is at its own limit
		}
		u := a.turn[i]
		ready := u.waiting[0]
		u.waiting = u.waiting[1:]
		a.queued--
		u.running++
		a.running++
		a.free--
		ready <- nil
		// u goes to the back of the line, if it still waits.
		a.turn = slices.Delete(a.turn, i, i+1)
		if len(u.waiting) > 0 {
			a.turn = append(a.turn, u)
		}
	}
}

// forget drops u once it has nothing running or waiting. a.mu is held.
func (a *admission) forget(u *userSlots) {
	if u.running == 0 && len(u.waiting) == 0 {
		delete(a.users, u.name)
	}
}

func (a *admission) notify() { a.changed(a.running, a.queued) }

// close refuses every waiting and future PUT with errClosed; running ones
// keep their slots until released.
func (a *admission) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for _, u := range a.turn {
		for _, ready := range u.waiting {
			ready <- errClosed
		}
		a.queued -= len(u.waiting)
		u.waiting = nil
		a.forget(u)
	}
	a.turn = nil
	a.notify()
}

// stats returns the PUTs running and waiting.
func (a *admission) stats() (running, queued int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.running, a.queued
}
