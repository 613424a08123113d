package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

// each calls f with every readable object of resource that passes the
// request's filters.
func (s *Server) each(sess *session, resource string, params map[string]any, f func(raw []byte)) error {
	filters, err := parseFilters(params["filters"])
	if err != nil {
		return err
	}
	return s.store.Each(resource, func(_ string, raw []byte) bool {
		var obj map[string]any
		if json.Unmarshal(raw, &obj) != nil {
			return true
		}
		owner, _ := obj["owner_uuid"].(string)
		if resource == "logs" {
			if oo, _ := obj["object_owner_uuid"].(string); oo != "" && s.canRead(sess, oo) {
				owner = oo
			}
		}
		if !s.canRead(sess, owner) || !matchFilters(obj, filters) {
			return true
		}
		f(raw)
		return true
	})
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
			kind, _ := obj["kind"].(string)
			ok = kind == fs
		}
		if !ok {
			return false
		}
	}
	return true
}
