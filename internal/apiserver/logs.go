package apiserver

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/arv-upload/arv-upload/arvados"
)

func (s *Server) logs(sess *session, method, id string, params map[string]any) (any, error) {
	switch {
	case method == http.MethodGet && id == "":
		var items []arvados.Log
		err := s.each(sess, "logs", params, func(raw []byte) {
			var l arvados.Log
			if json.Unmarshal(raw, &l) == nil {
				items = append(items, l)
			}
		})
		return list("arvados#logList", items), err
	case method == http.MethodPost && id == "":
		a, err := attrs(params, "log", "event_type", "object_uuid", "summary", "properties", "event_at")
		if err != nil {
			return nil, err
		}
		var l arvados.Log
		if err := remarshal(a, &l); err != nil {
			return nil, err
		}
		if err := s.prepareLog(sess, &l); err != nil {
			return nil, err
		}
		now := time.Now().UTC()
		l.Common = common(s.uuid("57u5n"), sess.user.UUID, now)
		l.Kind = "arvados#log"
		l.ID = now.UnixNano()
		if l.EventAt == nil {
			l.EventAt = &now
		}
		l.ObjectKind = kindOf(l.ObjectUUID)
		return l, s.store.Put("logs", l.UUID, l)
	}
	return nil, errorf(http.StatusNotFound, "no such route")
}
