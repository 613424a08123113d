package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// each calls f with every readable object of resource that passes the
// request's filters. Trashed collections and groups, and what trashed
// projects hold, are left out unless include_trash.
func (s *Server) each(sess *session, resource string, params map[string]any, f func(raw []byte)) error {
	filters, err := parseFilters(params["filters"])
	if err != nil {
		return err
	}
	return s.eachObject(s.access(sess), resource, filters, boolParam(params, "include_trash"),
		func(_ map[string]any, raw []byte) { f(raw) })
}

// eachObject calls f with every object of resource the caller may read
// that passes filters, decoded (with its kind, for is_a) and raw.
func (s *Server) eachObject(a *access, resource string, filters []filter, includeTrash bool, f func(obj map[string]any, raw []byte)) error {
	return s.store.Each(resource, func(_ string, raw []byte) bool {
		var obj map[string]any
		if json.Unmarshal(raw, &obj) != nil {
			return true
		}
		if _, ok := obj["kind"]; !ok {
			obj["kind"] = models[resource].kind
		}
		if s.readable(a, resource, obj, includeTrash) && matchFilters(obj, filters) {
			f(obj, raw)
		}
		return true
	})
}

// readable reports whether the caller may see obj, a stored object of
// resource decoded as JSON.
func (s *Server) readable(a *access, resource string, obj map[string]any, includeTrash bool) bool {
	str := func(k string) string { v, _ := obj[k].(string); return v }
	uuid, owner := str("uuid"), str("owner_uuid")
	switch resource {
	case "collections":
		trashed, _ := obj["is_trashed"].(bool)
		if !includeTrash && (trashed || a.st.inTrash(owner)) {
			return false
		}
	case "groups":
		if !includeTrash && (trashedAt(timeAttr(obj, "trash_at"), time.Now()) || a.st.inTrash(owner)) {
			return false
		}
	case "links":
		return s.linkReadable(a, uuid, owner, str("link_class"), str("head_uuid"), str("tail_uuid"))
	case "logs":
		// Also readable by whoever may read what the logged object's
		// owner holds.
		if oo := str("object_owner_uuid"); oo != "" && a.can("", oo, permRead) {
			return true
		}
	}
	return a.can(uuid, owner, permRead)
}

func timeAttr(obj map[string]any, k string) *time.Time {
	v, _ := obj[k].(string)
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil
	}
	return &t
}

type filter struct {
	attr, op string
	val      any
}

func parseFilters(v any) ([]filter, error) {
	if v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, errorf(http.StatusUnprocessableEntity, "filters must be a JSON array")
	}
	var out []filter
	for _, item := range arr {
		f, ok := item.([]any)
		if !ok || len(f) != 3 {
			return nil, errorf(http.StatusUnprocessableEntity, "each filter must be [attribute, operator, operand]")
		}
		attr, ok1 := f[0].(string)
		op, ok2 := f[1].(string)
		if !ok1 || !ok2 {
			return nil, errorf(http.StatusUnprocessableEntity, "invalid filter %v", f)
		}
		switch strings.ToLower(op) {
		case "=", "!=", "<>", "<", "<=", ">", ">=", "like", "ilike", "in", "not in", "exists", "is_a":
		default:
			return nil, errorf(http.StatusUnprocessableEntity, "unsupported filter operator %q", op)
		}
		out = append(out, filter{attr, strings.ToLower(op), f[2]})
	}
	return out, nil
}

func lookup(obj map[string]any, attr string) (any, bool) {
	if strings.HasPrefix(attr, "properties.") {
		props, _ := obj["properties"].(map[string]any)
		v, ok := props[strings.TrimPrefix(attr, "properties.")]
		return v, ok
	}
	v, ok := obj[attr]
	return v, ok
}

func matchFilters(obj map[string]any, filters []filter) bool {
	for _, f := range filters {
		v, present := lookup(obj, f.attr)
		vs, fs := fmt.Sprint(v), fmt.Sprint(f.val)
		ok := false
		switch f.op {
		case "=":
			ok = present && vs == fs
		case "!=", "<>":
			ok = !present || vs != fs
		case "<", "<=", ">", ">=":
			a, e1 := strconv.ParseFloat(vs, 64)
			b, e2 := strconv.ParseFloat(fs, 64)
			c := strings.Compare(vs, fs)
			if e1 == nil && e2 == nil {
				c = map[bool]int{true: -1, false: 1}[a < b]
				if a == b {
					c = 0
				}
			}
			ok = map[string]bool{"<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[f.op]
		case "like", "ilike":
			pat := "^" + strings.NewReplacer("%", ".*", "_", ".").Replace(regexp.QuoteMeta(fs)) + "$"
			if f.op == "ilike" {
				pat = "(?i)" + pat
			}
			ok = regexp.MustCompile(pat).MatchString(vs)
		case "in", "not in":
			arr, _ := f.val.([]any)
			in := false
			for _, a := range arr {
				if fmt.Sprint(a) == vs {
					in = true
				}
			}
			ok = in == (f.op == "in")
		case "exists":
			ok = present == (fs == "true")
		case "is_a":
			// On uuid, the object's own kind; on another attribute
			// (head_uuid, owner_uuid), the kind its UUID names, as
			// upstream.
			kind, _ := obj["kind"].(string)
			if f.attr != "uuid" {
				kind = kindOf(vs)
			}
			kinds, isList := f.val.([]any)
			if !isList {
				kinds = []any{f.val}
			}
			for _, k := range kinds {
				ok = ok || kind == k
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
