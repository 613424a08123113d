package apiserver

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/arv-upload/arv-upload/arvados"
)

// reservedEventTypes are the log event types that record what the cluster
// itself saw: block_put is the proxy's audit record of a stored block; the
// others are what upstream's API server and controller write on their own
// (object history, logins, activity, secret access). Only the audit
// identity may create them, so that a user cannot forge a record that
// readers take for the cluster's. Matched case-insensitively and trimmed,
// so that "Block_Put " cannot pass for one either.
var reservedEventTypes = []string{
	"block_put",
	"create", "update", "delete", "destroy",
	"login", "logout", "activity", "secret_access",
}

func isReservedEvent(eventType string) bool {
	return slices.Contains(reservedEventTypes, strings.ToLower(strings.TrimSpace(eventType)))
}

// isAuditIdentity reports whether the caller may create reserved log
// events: the system user (the system root token, which devcluster's proxy
// uses) or one of Options.AuditUsers (a dedicated user whose token the
// proxy holds on a cluster where the root token stays on the API host).
// Other admins may not: an audit record is only worth something if the
// people it audits cannot write one.
func (s *Server) isAuditIdentity(sess *session) bool {
	return sess.user.UUID == s.systemUserUUID() || slices.Contains(s.opts.AuditUsers, sess.user.UUID)
}

// prepareLog applies the server's rules to a log the caller creates: a
// reserved event type needs the audit identity (403), and
// object_owner_uuid is the owner of object_uuid when that names an object
// the caller may read, else empty. The client never sets it (attrs refuses
// it as read-only): a forged one would show the record in the victim's log
// list. owner_uuid is the caller, set by the handler.
func (s *Server) prepareLog(sess *session, l *arvados.Log) error {
	if isReservedEvent(l.EventType) && !s.isAuditIdentity(sess) {
		return errorf(http.StatusForbidden, "Forbidden: event_type %q is reserved for the cluster's audit identity "+
			"(the system root token, or a user named by arv-server api --audit-user); use another event_type", l.EventType)
	}
	l.ObjectOwnerUUID = ""
	if o, ok := s.lookup(l.ObjectUUID); ok && s.access(sess).can(o.uuid, o.owner, permRead) {
		l.ObjectOwnerUUID = o.owner
		if o.resource == "users" {
			l.ObjectOwnerUUID = o.uuid // a user's records are its own
		}
	}
	return nil
}

// checkAuditUsers refuses an audit user that is not a user UUID, so that a
// typo fails the start instead of leaving the proxy's records refused.
func (o *Options) checkAuditUsers() error {
	for _, u := range o.AuditUsers {
		if !uuidRe.MatchString(u) || u[6:11] != "tpzed" {
			return fmt.Errorf("audit user %q is not a user UUID (xxxxx-tpzed-xxxxxxxxxxxxxxx)", u)
		}
	}
	return nil
}
