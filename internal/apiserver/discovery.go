package apiserver

import (
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

// A model is one kind of object the API serves: its discovery schema name,
// its UUID infix and the Go type whose JSON fields are its attributes.
type model struct {
	schema string // "Collection"; the list schema is schema+"List"
	infix  string // "4zz18"
	kind   string // "arvados#collection"
	typ    reflect.Type
}

// models, by discovery resource name.
var models = map[string]model{
	"api_client_authorizations": {"ApiClientAuthorization", "gj3su", "arvados#apiClientAuthorization", reflect.TypeFor[arvados.APIClientAuthorization]()},
	"collections":               {"Collection", "4zz18", "arvados#collection", reflect.TypeFor[arvados.Collection]()},
	"configs":                   {"Config", "", "arvados#config", reflect.TypeFor[map[string]any]()},
	"groups":                    {"Group", "j7d0g", "arvados#group", reflect.TypeFor[arvados.Group]()},
	"keep_services":             {"KeepService", "bi6l4", "arvados#keepService", reflect.TypeFor[arvados.KeepService]()},
	"links":                     {"Link", "o0j2j", "arvados#link", reflect.TypeFor[arvados.Link]()},
	"logs":                      {"Log", "57u5n", "arvados#log", reflect.TypeFor[arvados.Log]()},
	"uploader_accounts":         {"UploaderAccount", "tpzed", "arvados#uploaderAccount", reflect.TypeFor[arvados.UploaderAccount]()},
	"users":                     {"User", "tpzed", "arvados#user", reflect.TypeFor[arvados.User]()},
}

// singular is the body key of a resource's create and update requests
// ({"collection": {...}}).
func singular(resource string) string {
	switch resource {
	case "configs":
		return "config"
	}
	return strings.TrimSuffix(resource, "s")
}

// discoveryDoc is the discovery document (PROTOCOL 16): the cluster fields
// of PROTOCOL 5.2, and every route of the table as resources.<r>.methods.<m>
// with the schema of each model. Clients (the Python SDK and the arv CLI,
// through google-api-python-client) build their whole client from it.
//
// rootUrl is Options.ExternalURL, else the address the client used.
func (s *Server) discoveryDoc(r *http.Request) map[string]any {
	root := s.opts.ExternalURL
	if root == "" {
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		root = scheme + "://" + r.Host
	}
	resources := map[string]any{}
	schemas := map[string]any{}
	for _, rt := range s.routes {
		res, ok := resources[rt.resource].(map[string]any)
		if !ok {
			res = map[string]any{"methods": map[string]any{}}
			resources[rt.resource] = res
		}
		res["methods"].(map[string]any)[rt.method] = rt.describe()
		m := models[rt.resource]
		if _, ok := schemas[m.schema]; !ok {
			schemas[m.schema] = schemaOf(m)
			schemas[m.schema+"List"] = listSchemaOf(m)
		}
	}
	return map[string]any{
		"kind": "discovery#restDescription", "discoveryVersion": "v1", "id": "arvados:v1", "name": "arvados",
		"version": "v1", "revision": discoveryRevision, "protocol": "rest",
		"title": "Arvados API (arv-server subset)", "description": "The Arvados API as served by arv-server: the subset that uploads, reads and projects need.",
		"rootUrl": root + "/", "servicePath": "arvados/v1/", "basePath": "/arvados/v1/", "baseUrl": root + "/arvados/v1/", "batchPath": "batch",
		"parameters": map[string]any{
			"alt":         map[string]any{"type": "string", "description": "Data format for the response.", "default": "json", "enum": []string{"json"}, "location": "query"},
			"fields":      map[string]any{"type": "string", "description": "Selector specifying which fields to include in a partial response.", "location": "query"},
			"key":         map[string]any{"type": "string", "description": "API key. Not used by Arvados.", "location": "query"},
			"oauth_token": map[string]any{"type": "string", "description": "OAuth 2.0 token for the current user.", "location": "query"},
		},
		"auth": map[string]any{"oauth2": map[string]any{"scopes": map[string]any{
			"https://api.arvados.org/auth/arvados": map[string]any{"description": "View and manage objects"},
		}}},
		"uuidPrefix": s.opts.ClusterID, "blobSignatureTtl": int64(s.opts.BlobSigningTTL / time.Second),
		"defaultCollectionReplication": s.opts.DefaultReplication, "defaultTrashLifetime": 1209600,
		"maxRequestSize": s.opts.MaxRequestSize, "maxItemsPerResponse": 1000,
		"schemas": schemas, "resources": resources,
	}
}

// discoveryRevision changes when the set of routes or schemas does.
const discoveryRevision = "20261202"

// describe is the route's discovery method.
func (rt route) describe() map[string]any {
	params := map[string]any{}
	var order []string
	if strings.Contains(rt.path, "{uuid}") {
		params["uuid"] = map[string]any{"type": "string", "required": true, "location": "path", "description": "The UUID of the object."}
		order = append(order, "uuid")
	}
	for _, p := range rt.params {
		d := map[string]any{"type": p.typ, "required": p.required, "location": "query", "description": p.desc}
		if p.def != "" {
			d["default"] = p.def
		}
		params[p.name] = d
	}
	m := map[string]any{
		"id": "arvados." + rt.resource + "." + rt.method, "path": rt.path, "httpMethod": rt.verb,
		"description": rt.desc, "parameters": params, "parameterOrder": order,
		"scopes": []string{"https://api.arvados.org/auth/arvados"},
	}
	if order == nil {
		m["parameterOrder"] = []string{}
	}
	mod := models[rt.resource]
	if rt.request {
		m["request"] = map[string]any{"required": true, "properties": map[string]any{
			singular(rt.resource): map[string]any{"$ref": mod.schema},
		}}
	}
	switch rt.response {
	case respObject:
		m["response"] = map[string]any{"$ref": mod.schema}
	case respList:
		m["response"] = map[string]any{"$ref": mod.schema + "List"}
	}
	return m
}

// schemaOf describes a model's attributes from the JSON fields of its Go
// type.
func schemaOf(m model) map[string]any {
	props := map[string]any{}
	if m.typ.Kind() == reflect.Struct {
		addFields(props, m.typ)
	}
	s := map[string]any{"id": m.schema, "type": "object", "description": m.schema, "properties": props}
	if m.infix != "" {
		s["uuidPrefix"] = m.infix
	}
	return s
}

func listSchemaOf(m model) map[string]any {
	return map[string]any{"id": m.schema + "List", "type": "object", "description": m.schema + " list",
		"properties": map[string]any{
			"kind":            map[string]any{"type": "string", "default": m.kind + "List"},
			"etag":            map[string]any{"type": "string"},
			"self_link":       map[string]any{"type": "string"},
			"offset":          map[string]any{"type": "integer"},
			"limit":           map[string]any{"type": "integer"},
			"items_available": map[string]any{"type": "integer"},
			"items":           map[string]any{"type": "array", "items": map[string]any{"$ref": m.schema}},
		}}
}

var timeType = reflect.TypeFor[time.Time]()

func addFields(props map[string]any, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			addFields(props, f.Type)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		d := map[string]any{"type": jsonType(f.Type)}
		if f.Type.Kind() == reflect.Slice {
			d["items"] = map[string]any{"type": jsonType(f.Type.Elem())}
		}
		props[name] = d
	}
}

// jsonType is the discovery type of a Go field, as upstream names them.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return "datetime"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "float"
	case t.Kind() == reflect.Slice:
		return "array"
	case t.Kind() == reflect.Map:
		return "Hash"
	}
	return "object"
}
