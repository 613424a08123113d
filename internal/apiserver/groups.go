package apiserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// Groups are projects (group_class "project": they own collections and
// other projects) and roles ("role": a set of users, the tails of
// permission links to it, that permission links from it pass their
// permissions on to). Filter groups are not served.

var groupAttrs = []string{"name", "description", "group_class", "properties", "owner_uuid", "trash_at", "delete_at", "is_trashed"}

// defaultTrashLifetime is how long a trashed project stays untrashable
// (upstream's Collections.DefaultTrashLifetime, which the discovery
// document advertises as defaultTrashLifetime).
const defaultTrashLifetime = 14 * 24 * time.Hour

func (s *Server) groupView(a *access, g arvados.Group) arvados.Group {
	g.Kind = "arvados#group"
	g.IsTrashed = trashedAt(g.TrashAt, time.Now())
	if g.Properties == nil {
		g.Properties = map[string]any{}
	}
	l := a.level(g.UUID, g.OwnerUUID)
	g.CanWrite, g.CanManage = l >= permWrite, l >= permManage
	return g
}

func (s *Server) groups(sess *session, method, id, action string, params map[string]any) (any, error) {
	if method != http.MethodGet {
		if sess.user.Uploader {
			return nil, errorf(http.StatusForbidden, "Forbidden: uploader accounts may not create or change projects")
		}
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	a := s.access(sess)
	switch {
	case method == http.MethodGet && action == "contents":
		return s.contents(sess, a, id, params)
	case method == http.MethodGet && id == "":
		return s.listGroups(sess, a, params)
	case method == http.MethodGet:
		g, err := s.getGroup(a, id, boolParam(params, "include_trash"))
		if err != nil {
			return nil, err
		}
		return selectFields(params, s.groupView(a, g)), nil
	case method == http.MethodPost && id == "":
		return s.createGroup(sess, params)
	case method == http.MethodPatch && id != "":
		return s.updateGroup(sess, a, id, params)
	case method == http.MethodDelete && id != "", method == http.MethodPost && action == "trash":
		g, err := s.getGroup(a, id, true)
		if err != nil {
			return nil, err
		}
		if err := mayWriteGroup(sess, a, g); err != nil {
			return nil, err
		}
		if !trashedAt(g.TrashAt, time.Now()) {
			now := time.Now().UTC()
			g.TrashAt, g.DeleteAt = &now, deleteAfter(g, now)
			if method == http.MethodDelete {
				// As upstream: delete trashes, for the shortest time signatures
				// handed out before allow.
				if earliest := now.Add(s.opts.BlobSigningTTL); g.DeleteAt.After(earliest) {
					g.DeleteAt = &earliest
				}
			}
			if err := s.saveGroup(sess, &g); err != nil {
				return nil, err
			}
		}
		return s.groupView(a, g), nil
	case method == http.MethodPost && action == "untrash":
		g, err := s.getGroup(a, id, true)
		if err != nil {
			return nil, err
		}
		if err := mayWriteGroup(sess, a, g); err != nil {
			return nil, err
		}
		now := time.Now()
		if !trashedAt(g.TrashAt, now) {
			return nil, errorf(http.StatusUnprocessableEntity, "group %s is not trashed, cannot untrash", id)
		}
		if g.DeleteAt != nil && !now.Before(*g.DeleteAt) {
			return nil, errorf(http.StatusUnprocessableEntity, "group %s: delete_at time has already passed, cannot untrash", id)
		}
		g.TrashAt, g.DeleteAt, g.IsTrashed = nil, nil, false
		if err := s.uniqueGroupName(&g, boolParam(params, "ensure_unique_name")); err != nil {
			return nil, err
		}
		if err := s.saveGroup(sess, &g); err != nil {
			return nil, err
		}
		return selectFields(params, s.groupView(a, g)), nil
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}

// getGroup finds a group the caller may read; a trashed one (or one in a
// trashed project) only with includeTrash, else it is a 404 like one that
// never existed.
func (s *Server) getGroup(a *access, id string, includeTrash bool) (arvados.Group, error) {
	var g arvados.Group
	if err := s.store.Get("groups", id, &g); err != nil || !a.can(g.UUID, g.OwnerUUID, permRead) ||
		(!includeTrash && (trashedAt(g.TrashAt, time.Now()) || a.st.inTrash(g.OwnerUUID))) {
		return g, errorf(http.StatusNotFound, "group %s not found", id)
	}
	return g, nil
}

// mayWriteGroup: a project needs can_write, a role can_manage (as
// upstream); either refusal of a readable group is a 403.
func mayWriteGroup(sess *session, a *access, g arvados.Group) error {
	need := permWrite
	if g.GroupClass == "role" {
		need = permManage
	}
	if !a.can(g.UUID, g.OwnerUUID, need) {
		return errorf(http.StatusForbidden, "Forbidden: group %s is not writable by %s", g.UUID, sess.user.UUID)
	}
	return nil
}

// deleteAfter is when a group trashed at t may be deleted: a role at
// once, a project after the trash lifetime.
func deleteAfter(g arvados.Group, t time.Time) *time.Time {
	if g.GroupClass == "role" {
		return &t
	}
	d := t.Add(defaultTrashLifetime)
	return &d
}

func (s *Server) saveGroup(sess *session, g *arvados.Group) error {
	now := time.Now().UTC()
	g.ModifiedAt, g.ModifiedByUserUUID = &now, sess.user.UUID
	g.IsTrashed = trashedAt(g.TrashAt, now)
	stored := *g
	stored.CanWrite, stored.CanManage, stored.Kind = false, false, ""
	if err := s.store.Put("groups", g.UUID, stored); err != nil {
		return err
	}
	s.perms.putGroup(stored)
	return nil
}

func (s *Server) createGroup(sess *session, params map[string]any) (any, error) {
	attrs, err := attrs(params, "group", groupAttrs...)
	if err != nil {
		return nil, err
	}
	var g arvados.Group
	if err := remarshal(attrs, &g); err != nil {
		return nil, err
	}
	switch g.GroupClass {
	case "project", "role":
	case "filter":
		return nil, errorf(http.StatusUnprocessableEntity, "group_class filter is not supported by this server; use project or role")
	default:
		return nil, errorf(http.StatusUnprocessableEntity, "group_class must be project or role, was %q", g.GroupClass)
	}
	owner := g.OwnerUUID
	if owner == "" {
		owner = sess.user.UUID
	}
	manager := ""
	if g.GroupClass == "role" {
		// As upstream: a role is owned by the system user, and who asked
		// to own it gets can_manage on it.
		if err := s.checkOwner(sess, owner, false); err != nil {
			return nil, err
		}
		manager, owner = owner, s.systemUserUUID()
	} else if err := s.checkOwner(sess, owner, true); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	g.Common = common(s.uuid("j7d0g"), owner, now)
	g.ModifiedByUserUUID = sess.user.UUID
	if g.Name == "" {
		g.Name = g.UUID // as upstream
	}
	if err := checkGroupName(g); err != nil {
		return nil, err
	}
	if err := setTrash(&g, attrs, nil, nil); err != nil {
		return nil, err
	}
	if err := s.uniqueGroupName(&g, boolParam(params, "ensure_unique_name")); err != nil {
		return nil, err
	}
	if err := s.saveGroup(sess, &g); err != nil {
		return nil, err
	}
	if manager != "" {
		l := arvados.Link{Common: common(s.uuid("o0j2j"), s.systemUserUUID(), now), LinkClass: "permission",
			Name: "can_manage", TailUUID: manager, HeadUUID: g.UUID, Properties: map[string]any{}}
		l.ModifiedByUserUUID = sess.user.UUID
		if err := s.store.Put("links", l.UUID, l); err != nil {
			return nil, err
		}
		s.perms.putLink(l)
	}
	return selectFields(params, s.groupView(s.access(sess), g)), nil
}

func (s *Server) updateGroup(sess *session, a *access, id string, params map[string]any) (any, error) {
	g, err := s.getGroup(a, id, false)
	if err != nil {
		return nil, err
	}
	if err := mayWriteGroup(sess, a, g); err != nil {
		return nil, err
	}
	attrs, err := attrs(params, "group", groupAttrs...)
	if err != nil {
		return nil, err
	}
	if c, ok := attrs["group_class"]; ok && c != g.GroupClass {
		return nil, errorf(http.StatusUnprocessableEntity, "group_class cannot be modified after the group is created")
	}
	if o, ok := attrs["owner_uuid"].(string); ok && o != g.OwnerUUID {
		if g.GroupClass == "role" {
			return nil, errorf(http.StatusUnprocessableEntity, "the owner of a role must be the system user")
		}
		if !a.canNode(g.OwnerUUID, permWrite) {
			return nil, errorf(http.StatusForbidden, "Forbidden: cannot move project away from owner %s", g.OwnerUUID)
		}
		if err := s.checkOwner(sess, o, true); err != nil {
			return nil, err
		}
		for x, i := o, 0; x != "" && i < 64; x, i = a.st.nodes[x].owner, i+1 {
			if x == g.UUID {
				return nil, errorf(http.StatusUnprocessableEntity, "owner_uuid %s would create an ownership cycle", o)
			}
			if !a.st.nodes[x].group {
				break
			}
		}
	}
	oldTrash, oldDelete := g.TrashAt, g.DeleteAt
	if err := remarshal(attrs, &g); err != nil {
		return nil, err
	}
	if err := checkGroupName(g); err != nil {
		return nil, err
	}
	if err := setTrash(&g, attrs, oldTrash, oldDelete); err != nil {
		return nil, err
	}
	if err := s.uniqueGroupName(&g, boolParam(params, "ensure_unique_name")); err != nil {
		return nil, err
	}
	if err := s.saveGroup(sess, &g); err != nil {
		return nil, err
	}
	return selectFields(params, s.groupView(s.access(sess), g)), nil
}

// setTrash applies upstream's trash rules to the attributes a set on g
// (whose trash_at and delete_at were oldTrash and oldDelete): a trash_at
// in the past means now; is_trashed alone trashes now or untrashes;
// trash_at without delete_at sets delete_at after the trash lifetime; the
// two are set together or not at all, delete_at not before trash_at.
func setTrash(g *arvados.Group, a map[string]any, oldTrash, oldDelete *time.Time) error {
	now := time.Now().UTC()
	_, trashSet := a["trash_at"]
	_, deleteSet := a["delete_at"]
	if _, ok := a["is_trashed"]; ok && !trashSet && g.IsTrashed != trashedAt(oldTrash, now) {
		if g.IsTrashed {
			g.TrashAt = &now
		} else {
			g.TrashAt, g.DeleteAt = nil, nil
		}
		trashSet = true
	}
	if trashSet && g.TrashAt != nil && g.TrashAt.Before(now) {
		g.TrashAt = &now
	}
	if trashSet && !deleteSet {
		if g.TrashAt == nil {
			g.DeleteAt = nil
		} else {
			g.DeleteAt = deleteAfter(*g, *g.TrashAt)
		}
	}
	if !trashSet && !deleteSet {
		g.TrashAt, g.DeleteAt = oldTrash, oldDelete
	}
	switch {
	case (g.TrashAt == nil) != (g.DeleteAt == nil):
		return errorf(http.StatusUnprocessableEntity, "delete_at must be set if trash_at is set, and must be null otherwise")
	case g.TrashAt != nil && g.DeleteAt.Before(*g.TrashAt):
		return errorf(http.StatusUnprocessableEntity, "delete_at must not be earlier than trash_at")
	}
	g.IsTrashed = trashedAt(g.TrashAt, now)
	return nil
}

// checkGroupName: project names become directory names (upstream's
// ensure_filesystem_compatible_name), and no name may hold NUL.
func checkGroupName(g arvados.Group) error {
	if strings.IndexByte(g.Name, 0) >= 0 {
		return errorf(http.StatusUnprocessableEntity, "group name %q contains a NUL character; choose a name without it", g.Name)
	}
	if g.GroupClass == "project" && (g.Name == "." || g.Name == ".." || strings.Contains(g.Name, "/")) {
		return errorf(http.StatusUnprocessableEntity, "project name %q cannot be used as a directory name: it may not be \".\" or \"..\" or contain \"/\"", g.Name)
	}
	return nil
}

// uniqueGroupName enforces (owner, name) uniqueness among untrashed
// groups, as upstream's index, with the suffix of ensure_unique_name.
func (s *Server) uniqueGroupName(g *arvados.Group, ensure bool) error {
	if g.IsTrashed {
		return nil
	}
	return s.uniqueIn("groups", "group", g.UUID, g.OwnerUUID, &g.Name, ensure, func(raw []byte) bool {
		var o arvados.Group
		return json.Unmarshal(raw, &o) == nil && o.OwnerUUID == g.OwnerUUID && o.Name == g.Name && !trashedAt(o.TrashAt, time.Now())
	})
}

// listGroups lists the groups the caller may read, projects and roles.
func (s *Server) listGroups(sess *session, a *access, params map[string]any) (any, error) {
	opts, err := parseListOpts(params)
	if err != nil {
		return nil, err
	}
	var items []map[string]any
	err = s.each(sess, "groups", params, func(raw []byte) {
		var g arvados.Group
		if json.Unmarshal(raw, &g) == nil {
			items = append(items, asMap(s.groupView(a, g)))
		}
	})
	if err != nil {
		return nil, err
	}
	sortItems(items, opts.order, "")
	return opts.page("arvados#groupList", items, params), nil
}

// contents lists what a project (or a user's home project, or with no
// UUID everything the caller may read) holds: its projects, then its
// collections, each kind sorted by the order asked for, as upstream's
// groups#contents. Filters may name an attribute of one kind as
// "groups.<attr>" or "collections.<attr>"; is_a picks kinds. Collections
// come without manifest_text, as upstream.
func (s *Server) contents(sess *session, a *access, id string, params map[string]any) (any, error) {
	if id == "" {
		id, _ = params["uuid"].(string)
	}
	opts, err := parseListOpts(params)
	if err != nil {
		return nil, err
	}
	filters, err := parseFilters(params["filters"])
	if err != nil {
		return nil, err
	}
	includeTrash := boolParam(params, "include_trash")
	excludeHome := boolParam(params, "exclude_home_project")
	var owners map[string]bool // nil: any owner
	if id != "" {
		if excludeHome {
			return nil, errorf(http.StatusUnprocessableEntity, "exclude_home_project cannot be used with a parent object (uuid %s)", id)
		}
		switch kindOf(id) {
		case "arvados#group":
			if _, err := s.getGroup(a, id, includeTrash); err != nil {
				return nil, err
			}
		case "arvados#user":
			if _, err := s.getUser(sess, id); err != nil {
				return nil, err
			}
		default:
			return nil, errorf(http.StatusNotFound, "group %s not found", id)
		}
		owners = map[string]bool{id: true}
		if boolParam(params, "recursive") {
			for _, d := range a.st.descendants(id) {
				owners[d] = true
			}
		}
	}
	keep := func(obj map[string]any) bool {
		owner, _ := obj["owner_uuid"].(string)
		if owners != nil && !owners[owner] {
			return false
		}
		if excludeHome {
			// What is shared with the caller: not under its home project.
			n, isNode := a.st.nodes[owner]
			return (isNode && !n.group && owner != a.user) || !a.canNode(owner, permRead) || (n.group && n.class != "project")
		}
		return true
	}
	var groups, colls []map[string]any
	err = s.eachObject(a, "groups", tableFilters(filters, "groups"), includeTrash, func(obj map[string]any, raw []byte) {
		var g arvados.Group
		if obj["group_class"] == "project" && keep(obj) && json.Unmarshal(raw, &g) == nil {
			groups = append(groups, asMap(s.groupView(a, g)))
		}
	})
	if err != nil {
		return nil, err
	}
	err = s.eachObject(a, "collections", tableFilters(filters, "collections"), includeTrash, func(obj map[string]any, raw []byte) {
		var c collection
		if keep(obj) && json.Unmarshal(raw, &c) == nil {
			c.ManifestText = ""
			m := asMap(s.collectionView(sess, a, c))
			delete(m, "manifest_text")
			colls = append(colls, m)
		}
	})
	if err != nil {
		return nil, err
	}
	sortItems(groups, opts.order, "groups")
	sortItems(colls, opts.order, "collections")
	return opts.page("arvados#objectList", append(groups, colls...), params), nil
}

// tableFilters keeps the filters that apply to table: those on an
// attribute every kind has, and those on "<table>.<attr>" (as "<attr>").
func tableFilters(filters []filter, table string) []filter {
	var out []filter
	for _, f := range filters {
		if t, attr, ok := strings.Cut(f.attr, "."); ok && (t == "groups" || t == "collections") {
			if t != table {
				continue
			}
			f.attr = attr
		}
		out = append(out, f)
	}
	return out
}
