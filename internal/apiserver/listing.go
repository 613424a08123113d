package apiserver

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// listOpts are a listing's order, limit, offset and count (PROTOCOL 9.3),
// for the listings that page (groups, contents).
type listOpts struct {
	limit, offset int
	order         []orderKey
	countNone     bool
}

// orderKey is one "attr [asc|desc]" of order; table is set when the
// attribute was qualified ("collections.name") and then applies to that
// kind only.
type orderKey struct {
	table, attr string
	desc        bool
}

const (
	defaultLimit = 100
	maxLimit     = 1000 // maxItemsPerResponse in the discovery document
)

var orderAttrRe = regexp.MustCompile(`^(?:(groups|collections)\.)?([a-z_]+)$`)

func parseListOpts(params map[string]any) (listOpts, error) {
	o := listOpts{limit: defaultLimit}
	for k, dst := range map[string]*int{"limit": &o.limit, "offset": &o.offset} {
		v, ok := params[k]
		if !ok || v == nil || v == "" {
			continue
		}
		n, err := intValue(v)
		if err != nil || n < 0 {
			return o, errorf(http.StatusUnprocessableEntity, "%s must be a non-negative integer, was %v", k, v)
		}
		*dst = n
	}
	o.limit = min(o.limit, maxLimit)
	switch c, _ := params["count"].(string); c {
	case "", "exact":
	case "none":
		o.countNone = true
	default:
		return o, errorf(http.StatusUnprocessableEntity, "count must be exact or none, was %q", c)
	}
	var keys []string
	switch v := params["order"].(type) {
	case nil:
	case string:
		if v != "" {
			keys = strings.Split(v, ",")
		}
	case []any:
		for _, k := range v {
			s, ok := k.(string)
			if !ok {
				return o, errorf(http.StatusUnprocessableEntity, "order must be a list of strings, was %v", v)
			}
			keys = append(keys, s)
		}
	default:
		return o, errorf(http.StatusUnprocessableEntity, "order must be a list of strings, was %v", v)
	}
	if len(keys) == 0 {
		keys = []string{"modified_at desc", "uuid asc"}
	}
	hasUUID := false
	for _, k := range keys {
		f := strings.Fields(k)
		if len(f) == 0 || len(f) > 2 {
			return o, errorf(http.StatusUnprocessableEntity, "invalid order %q: want \"attribute [asc|desc]\"", k)
		}
		m := orderAttrRe.FindStringSubmatch(f[0])
		if m == nil {
			return o, errorf(http.StatusUnprocessableEntity, "invalid order attribute %q", f[0])
		}
		key := orderKey{table: m[1], attr: m[2]}
		if len(f) == 2 {
			switch strings.ToLower(f[1]) {
			case "asc":
			case "desc":
				key.desc = true
			default:
				return o, errorf(http.StatusUnprocessableEntity, "invalid order direction %q: want asc or desc", f[1])
			}
		}
		hasUUID = hasUUID || (key.attr == "uuid" && key.table == "")
		o.order = append(o.order, key)
	}
	if !hasUUID {
		o.order = append(o.order, orderKey{attr: "uuid"}) // a stable order to page through
	}
	return o, nil
}

func intValue(v any) (int, error) {
	switch n := v.(type) {
	case float64:
		if n != float64(int(n)) {
			return 0, fmt.Errorf("not an integer")
		}
		return int(n), nil
	case string:
		return strconv.Atoi(n)
	}
	return 0, fmt.Errorf("not an integer")
}

// sortItems sorts items (objects as JSON maps) of table by the keys that
// apply to it. As PostgreSQL sorts: nulls after everything ascending,
// first descending.
func sortItems(items []map[string]any, keys []orderKey, table string) {
	sort.SliceStable(items, func(i, j int) bool {
		for _, k := range keys {
			if k.table != "" && k.table != table {
				continue
			}
			c := compareValues(items[i][k.attr], items[j][k.attr])
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
}

func compareValues(x, y any) int {
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return 1
	case y == nil:
		return -1
	}
	switch xv := x.(type) {
	case string:
		yv, ok := y.(string)
		if !ok {
			break
		}
		tx, err1 := time.Parse(time.RFC3339Nano, xv)
		ty, err2 := time.Parse(time.RFC3339Nano, yv)
		if err1 == nil && err2 == nil {
			return tx.Compare(ty)
		}
		return strings.Compare(xv, yv)
	case float64:
		if yv, ok := y.(float64); ok {
			switch {
			case xv < yv:
				return -1
			case xv > yv:
				return 1
			}
			return 0
		}
	case bool:
		if yv, ok := y.(bool); ok {
			switch {
			case xv == yv:
				return 0
			case !xv:
				return -1
			}
			return 1
		}
	}
	return strings.Compare(fmt.Sprint(x), fmt.Sprint(y))
}

// page is the list response for items (all that matched, sorted): the
// page that offset and limit pick, each item cut to the selected
// attributes, and items_available unless count=none.
func (o listOpts) page(kind string, items []map[string]any, params map[string]any) map[string]any {
	lo := min(o.offset, len(items))
	hi := min(lo+o.limit, len(items))
	out := make([]any, 0, hi-lo)
	for _, it := range items[lo:hi] {
		out = append(out, selectFields(params, it))
	}
	resp := map[string]any{"kind": kind, "etag": "", "self_link": "", "offset": o.offset, "limit": o.limit, "items": out}
	if !o.countNone {
		resp["items_available"] = len(items)
	}
	return resp
}

// asMap is v as its JSON object.
func asMap(v any) map[string]any {
	var m map[string]any
	remarshal(v, &m)
	return m
}
