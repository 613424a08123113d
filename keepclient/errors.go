package keepclient

import "errors"

// ErrBlockTooLarge means a block exceeds arvados.BlockSize; it is refused
// before anything is sent.
var ErrBlockTooLarge = errors.New("block larger than 64 MiB")

// ErrInsufficientReplicas means a block was stored on fewer services than
// requested.
var ErrInsufficientReplicas = errors.New("could not write sufficient replicas")

// ErrTokenRefused means a server refused the token itself: the API server
// answered 401, or every Keep service answered 401 or 403 (keepproxy's
// answer to an invalid token). The token is revoked, expired, or belongs
// to a deactivated account; retrying with it cannot help.
var ErrTokenRefused = errors.New("token refused")
