package apiserver

import (
	"encoding/json"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// Permissions follow upstream's graph (services/api permission tables):
//
//   - the nodes are users and groups; an owner holds can_manage on what it
//     owns, every user on itself, and a permission link gives its tail
//     (a user or a role) its level on its head (any object);
//   - a user's level on a node is the best, over the paths from the user,
//     of the weakest link on the path; a path goes on from groups, and
//     from users the start may act for (can_manage on them, as ownership
//     gives), never from other users;
//   - an object that is not a node (a collection, a link, a log) is
//     reached through a permission link on it, or through its owner when
//     the owner is a group or a user the caller may act for;
//   - admins may do anything.
//
// So a permission on a project covers everything in it and its
// subprojects, and a role passes its permissions on to its members (the
// tails of links to it), at the weaker of the two levels.
//
// The graph is small (users, groups, permission links; never collections
// or logs) and lives in memory: permIndex holds an immutable snapshot,
// rebuilt from the store at Open and replaced (copy on write) after each
// write of a user, a group or a permission link, which the store receives
// first: the store holds the truth. Each user's levels are computed from
// a snapshot on first use and kept with it, so a check is a map lookup.
// The index assumes one server per store, which bbolt's file lock makes
// so.

// perm is a permission level.
type perm int8

const (
	permNone perm = iota
	permRead
	permWrite
	permManage
)

// permByName maps permission link names to levels (upstream's PERM_LEVEL).
var permByName = map[string]perm{"can_read": permRead, "can_login": permRead, "can_write": permWrite, "can_manage": permManage}

// permNode is a user or a group as the graph needs it.
type permNode struct {
	owner   string
	group   bool
	class   string     // groups: "project" or "role"
	trashAt *time.Time // groups
}

// permLink is a permission link.
type permLink struct {
	tail, head string
	level      perm
}

// grant is a user's level on a target, and whether it extends to what the
// target owns (upstream's traverse_owned).
type grant struct {
	level perm
	owned bool
}

// permState is one immutable snapshot of the graph.
type permState struct {
	nodes    map[string]permNode
	links    map[string]permLink // by link UUID
	children map[string][]string // owner -> the users and groups it owns
	byTail   map[string][]string // tail -> its links' UUIDs
	grants   sync.Map            // user UUID -> map[string]grant
}

// permIndex holds the current snapshot. Changes are serialized by mu;
// readers load the snapshot without locking.
type permIndex struct {
	mu  sync.Mutex
	cur atomic.Pointer[permState]
}

func newPermState(nodes map[string]permNode, links map[string]permLink) *permState {
	st := &permState{nodes: nodes, links: links, children: map[string][]string{}, byTail: map[string][]string{}}
	for uuid, n := range nodes {
		if n.owner != "" && n.owner != uuid {
			st.children[n.owner] = append(st.children[n.owner], uuid)
		}
	}
	for uuid, l := range links {
		st.byTail[l.tail] = append(st.byTail[l.tail], uuid)
	}
	return st
}

func (ix *permIndex) state() *permState { return ix.cur.Load() }

// change replaces the snapshot with a copy that f has changed.
func (ix *permIndex) change(f func(nodes map[string]permNode, links map[string]permLink)) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	old := ix.cur.Load()
	nodes, links := maps.Clone(old.nodes), maps.Clone(old.links)
	f(nodes, links)
	ix.cur.Store(newPermState(nodes, links))
}

func (ix *permIndex) putUser(u arvados.User) {
	ix.change(func(nodes map[string]permNode, _ map[string]permLink) {
		nodes[u.UUID] = permNode{owner: u.OwnerUUID}
	})
}

func (ix *permIndex) putGroup(g arvados.Group) {
	ix.change(func(nodes map[string]permNode, _ map[string]permLink) { nodes[g.UUID] = groupNode(g) })
}

func groupNode(g arvados.Group) permNode {
	return permNode{owner: g.OwnerUUID, group: true, class: g.GroupClass, trashAt: g.TrashAt}
}

// putLink records l if it is a permission link, and forgets a link of
// its UUID that is not (any more).
func (ix *permIndex) putLink(l arvados.Link) {
	ix.change(func(_ map[string]permNode, links map[string]permLink) {
		if pl, ok := asPermLink(l); ok {
			links[l.UUID] = pl
		} else {
			delete(links, l.UUID)
		}
	})
}

func (ix *permIndex) deleteLink(uuid string) {
	ix.change(func(_ map[string]permNode, links map[string]permLink) { delete(links, uuid) })
}

func asPermLink(l arvados.Link) (permLink, bool) {
	level := permByName[l.Name]
	if l.LinkClass != "permission" || level == permNone {
		return permLink{}, false
	}
	return permLink{tail: l.TailUUID, head: l.HeadUUID, level: level}, true
}

// loadPermissions builds the index from the store (at Open).
func (s *Server) loadPermissions() error {
	nodes, links := map[string]permNode{}, map[string]permLink{}
	walk := func(resource string, f func(raw []byte) error) error {
		var ferr error
		err := s.store.Each(resource, func(_ string, raw []byte) bool {
			ferr = f(raw)
			return ferr == nil
		})
		if err == nil {
			err = ferr
		}
		if err != nil {
			return fmt.Errorf("load permissions: %w", err)
		}
		return nil
	}
	err := walk("users", func(raw []byte) error {
		var u arvados.User
		if err := json.Unmarshal(raw, &u); err != nil {
			return err
		}
		nodes[u.UUID] = permNode{owner: u.OwnerUUID}
		return nil
	})
	if err != nil {
		return err
	}
	err = walk("groups", func(raw []byte) error {
		var g arvados.Group
		if err := json.Unmarshal(raw, &g); err != nil {
			return err
		}
		nodes[g.UUID] = groupNode(g)
		return nil
	})
	if err != nil {
		return err
	}
	err = walk("links", func(raw []byte) error {
		var l arvados.Link
		if err := json.Unmarshal(raw, &l); err != nil {
			return err
		}
		if pl, ok := asPermLink(l); ok {
			links[l.UUID] = pl
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.perms.cur.Store(newPermState(nodes, links))
	return nil
}

// grantsOf returns the levels of user on every node and link head it
// reaches, computed once per snapshot.
func (st *permState) grantsOf(user string) map[string]grant {
	if g, ok := st.grants.Load(user); ok {
		return g.(map[string]grant)
	}
	now := time.Now()
	g := map[string]grant{user: {permManage, true}}
	queue := []string{user}
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		from := g[t]
		if t != user {
			n, ok := st.nodes[t]
			switch {
			case ok && n.group && n.class == "role" && trashedAt(n.trashAt, now):
				continue // a trashed role grants nothing (upstream deletes its links)
			case ok && n.group:
			case ok && from.owned:
				// a user the start may act for (upstream's "user_uuids"),
				// at the level it holds on that user
			default:
				continue
			}
		}
		visit := func(head string, val perm) {
			n, ok := st.nodes[head]
			owned := ok && (n.group || val == permManage)
			cur := g[head]
			next := grant{max(cur.level, min(val, from.level)), cur.owned || owned}
			if next != cur {
				g[head] = next
				queue = append(queue, head)
			}
		}
		for _, c := range st.children[t] {
			visit(c, permManage)
		}
		for _, id := range st.byTail[t] {
			l := st.links[id]
			visit(l.head, l.level)
		}
	}
	st.grants.Store(user, g)
	return g
}

func trashedAt(t *time.Time, now time.Time) bool { return t != nil && !t.After(now) }

// inTrash reports whether owner is a group that is trashed or inside a
// trashed group: what it owns is hidden, as upstream's trashed_groups.
func (st *permState) inTrash(owner string) bool {
	now := time.Now()
	for i := 0; i < 64; i++ {
		n, ok := st.nodes[owner]
		if !ok || !n.group {
			return false
		}
		if trashedAt(n.trashAt, now) {
			return true
		}
		owner = n.owner
	}
	return false
}

// descendants returns the groups below group, at any depth.
func (st *permState) descendants(group string) []string {
	var out []string
	seen := map[string]bool{group: true}
	queue := []string{group}
	for len(queue) > 0 {
		t := queue[0]
		queue = queue[1:]
		for _, c := range st.children[t] {
			if st.nodes[c].group && !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// access is what the caller of one request may do, on one snapshot.
type access struct {
	st    *permState
	user  string
	admin bool
	g     map[string]grant
}

func (s *Server) access(sess *session) *access {
	st := s.perms.state()
	a := &access{st: st, user: sess.user.UUID, admin: sess.user.IsAdmin}
	if !a.admin {
		a.g = st.grantsOf(a.user)
	}
	return a
}

// level is the caller's level on the object uuid owned by owner: the
// better of a permission on the object and one on its owner that extends
// to what the owner owns.
func (a *access) level(uuid, owner string) perm {
	if a.admin || (uuid != "" && uuid == a.user) {
		return permManage
	}
	l := permNone
	if uuid != "" {
		l = a.g[uuid].level
	}
	if g := a.g[owner]; owner != "" && g.owned && g.level > l {
		l = g.level
	}
	return l
}

func (a *access) can(uuid, owner string, want perm) bool { return a.level(uuid, owner) >= want }

// canNode is can for a user or group, whose owner the index knows.
func (a *access) canNode(uuid string, want perm) bool {
	return a.can(uuid, a.st.nodes[uuid].owner, want)
}

var kindByInfix = map[string]string{"4zz18": "arvados#collection", "tpzed": "arvados#user", "o0j2j": "arvados#link",
	"57u5n": "arvados#log", "gj3su": "arvados#apiClientAuthorization", "j7d0g": "arvados#group"}

func kindOf(uuid string) string {
	if uuidRe.MatchString(uuid) {
		return kindByInfix[uuid[6:11]]
	}
	return ""
}

// object is what permission checks need to know of any object.
type object struct {
	uuid, owner string
	resource    string // "collections", "users", "groups", ...
	class       string // groups: group_class
	createdBy   string // collections: the user whose token created it
	trashed     bool   // trashed itself, or inside a trashed project
}

// lookup finds the object uuid names, if the server holds one.
func (s *Server) lookup(uuid string) (object, bool) {
	if !uuidRe.MatchString(uuid) {
		return object{}, false
	}
	res := map[string]string{"4zz18": "collections", "tpzed": "users", "o0j2j": "links", "57u5n": "logs", "j7d0g": "groups"}[uuid[6:11]]
	if res == "" {
		return object{}, false
	}
	var o struct {
		OwnerUUID  string     `json:"owner_uuid"`
		GroupClass string     `json:"group_class"`
		CreatedBy  string     `json:"created_by_user_uuid"`
		IsTrashed  bool       `json:"is_trashed"`
		TrashAt    *time.Time `json:"trash_at"`
	}
	if s.store.Get(res, uuid, &o) != nil {
		return object{}, false
	}
	obj := object{uuid: uuid, owner: o.OwnerUUID, resource: res, class: o.GroupClass, createdBy: o.CreatedBy}
	switch res {
	case "collections":
		obj.trashed = o.IsTrashed || s.perms.state().inTrash(o.OwnerUUID)
	case "groups":
		obj.trashed = trashedAt(o.TrashAt, time.Now()) || s.perms.state().inTrash(o.OwnerUUID)
	}
	return obj, true
}
