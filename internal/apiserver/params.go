package apiserver

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"github.com/arv-upload/arv-upload/arvados"
)

// readParams merges query, form body and JSON body parameters (PROTOCOL
// 9.1). A JSON body without a resource wrapper is returned under "_body".
func readParams(r *http.Request) (map[string]any, error) {
	params := map[string]any{}
	addValues := func(v url.Values) error {
		for k, vs := range v {
			if len(vs) == 0 {
				continue
			}
			val := vs[len(vs)-1]
			if val != "" && (val[0] == '[' || val[0] == '{' || val[0] == '"') {
				if err := checkJSONText("parameter "+k, []byte(val)); err != nil {
					return err
				}
				var j any
				if err := json.Unmarshal([]byte(val), &j); err != nil {
					return errorf(http.StatusBadRequest, "parameter %s: malformed JSON: %v", k, err)
				}
				params[k] = j
			} else {
				params[k] = val
			}
		}
		return nil
	}
	if err := addValues(r.URL.Query()); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	ct := r.Header.Get("Content-Type")
	switch {
	case len(body) == 0:
	case strings.HasPrefix(ct, "application/x-www-form-urlencoded"):
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed form body: %v", err)
		}
		if err := addValues(v); err != nil {
			return nil, err
		}
	default:
		if err := checkJSONText("the request body", body); err != nil {
			return nil, err
		}
		var obj map[string]any
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, errorf(http.StatusBadRequest, "malformed JSON body: %v", err)
		}
		if obj == nil {
			return nil, errorf(http.StatusBadRequest, "malformed JSON body: null; send a JSON object")
		}
		for k, v := range obj {
			params[k] = v
		}
		params["_body"] = obj
	}
	return params, nil
}

// attrs returns the object attributes under key (an object or a JSON
// string), else the unwrapped JSON body, checked against allowed.
func attrs(params map[string]any, key string, allowed ...string) (map[string]any, error) {
	var a map[string]any
	switch v := params[key].(type) {
	case map[string]any:
		a = v
	case nil:
		if b, ok := params["_body"].(map[string]any); ok {
			a = map[string]any{}
			for k, v := range b {
				if !isRequestParam(k) {
					a[k] = v
				}
			}
		}
	default:
		return nil, errorf(http.StatusUnprocessableEntity, "%s must be a JSON object", key)
	}
	if a == nil {
		a = map[string]any{}
	}
	var unknown []string
	for k := range a {
		if !contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, errorf(http.StatusUnprocessableEntity, "unknown or read-only %s attributes: %s", key, strings.Join(unknown, ", "))
	}
	return a, nil
}

func isRequestParam(k string) bool {
	switch k {
	case "ensure_unique_name", "select", "cluster_id", "api_token", "_method", "filters", "order", "limit", "offset", "count", "replace_files", "replace_segments", "include_trash", "include_old_versions":
		return true
	}
	return false
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func boolParam(params map[string]any, k string) bool {
	switch v := params[k].(type) {
	case bool:
		return v
	case string:
		return v != "" && v != "false" && v != "0"
	}
	return false
}

func list[T any](kind string, items []T) arvados.List[T] {
	if items == nil {
		items = []T{}
	}
	return arvados.List[T]{Kind: kind, Items: items, Limit: 1000, ItemsAvailable: len(items)}
}

// selectFields answers a get, create or update with only the attributes
// the "select" parameter names (and kind), as upstream does; clients use
// it to keep a big manifest out of the response.
func selectFields(params map[string]any, v any) any {
	sel, ok := params["select"].([]any)
	if !ok || len(sel) == 0 {
		return v
	}
	var all map[string]any
	if remarshal(v, &all) != nil {
		return v
	}
	out := map[string]any{"kind": all["kind"]}
	for _, f := range sel {
		if k, ok := f.(string); ok {
			if val, ok := all[k]; ok {
				out[k] = val
			}
		}
	}
	return out
}

func remarshal(in any, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return errorf(http.StatusUnprocessableEntity, "invalid attribute value: %v", err)
	}
	return nil
}
