package arvados

import "errors"

// ErrInvalidLocator means a string is not a well-formed block locator.
var ErrInvalidLocator = errors.New("invalid locator")

// ErrSignatureMissing means a locator carries no +A permission hint.
var ErrSignatureMissing = errors.New("signature missing")

// ErrSignatureInvalid means a +A hint is malformed or does not match the
// token and key.
var ErrSignatureInvalid = errors.New("invalid signature")

// ErrSignatureExpired means a +A hint's expiry time has passed.
var ErrSignatureExpired = errors.New("expired signature")

// ErrInvalidManifest means a manifest text breaks the grammar or the API
// server's validation rules (PROTOCOL 8.1, 8.3).
var ErrInvalidManifest = errors.New("invalid manifest")

// ErrManifestTooLarge means a manifest is over the API's maxRequestSize and
// would be refused by the server.
var ErrManifestTooLarge = errors.New("manifest larger than the API server's maxRequestSize")
