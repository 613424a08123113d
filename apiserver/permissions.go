package apiserver

// ownedBy reports whether owner is user or (transitively) owned by user.
func (s *Server) ownedBy(owner, userUUID string) bool {
	for i := 0; i < 16 && owner != ""; i++ {
		if owner == userUUID {
			return true
		}
		var u user
		if s.store.Get("users", owner, &u) != nil || u.OwnerUUID == owner {
			return false
		}
		owner = u.OwnerUUID
	}
	return false
}

func (s *Server) canRead(sess *session, owner string) bool {
	return sess.user.IsAdmin || s.ownedBy(owner, sess.user.UUID)
}

var kindByInfix = map[string]string{"4zz18": "arvados#collection", "tpzed": "arvados#user", "o0j2j": "arvados#link",
	"57u5n": "arvados#log", "gj3su": "arvados#apiClientAuthorization", "j7d0g": "arvados#group"}

func kindOf(uuid string) string {
	if uuidRe.MatchString(uuid) {
		return kindByInfix[uuid[6:11]]
	}
	return ""
}

// objectOwner returns the owner of a readable object, or "" when uuid does
// not name one the server holds.
func (s *Server) objectOwner(uuid string) (string, string) {
	if !uuidRe.MatchString(uuid) {
		return "", ""
	}
	res := map[string]string{"4zz18": "collections", "tpzed": "users", "o0j2j": "links", "57u5n": "logs"}[uuid[6:11]]
	if res == "" {
		return "", ""
	}
	var o struct {
		OwnerUUID string `json:"owner_uuid"`
	}
	if s.store.Get(res, uuid, &o) != nil {
		return "", ""
	}
	if res == "users" {
		return uuid, res
	}
	return o.OwnerUUID, res
}
