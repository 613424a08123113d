// Package arvados is the Arvados data model the write path shares: block
// locators and their hints (PROTOCOL 2), blob permission signatures
// (PROTOCOL 3: Signature, SignLocator, VerifySignature, SignManifest),
// manifests with their escaping, validation and normalized form (PROTOCOL
// 8.1-8.5), portable data hashes (PROTOCOL 8.6), the JSON shapes of the
// API resources an uploader touches (PROTOCOL 5.1, 5.2, 9, 16), the scopes
// of uploader accounts and upload slots (PROTOCOL 10; our API server, the
// broker and the client all need them) and the errors for malformed
// locators, signatures and manifests.
//
// It is pure: no network, no files, no clocks read (callers pass the time
// in), no net/http import. keepclient, the HTTP client, is built on it;
// keepstore and apiserver use it to sign and verify locators without
// depending on a client. Memory: a manifest is parsed or built whole
// (Builder, ParseManifest); StreamWriter writes one directory's stream at a
// time, so a caller that feeds it directory by directory holds one stream.
// ManifestStats checks a manifest as ParseManifest does but keeps only a
// map entry per file name; StripSignatures, SignManifest and PortableText
// copy the text once, and PortableDataHash hashes the portable text as it
// is produced, without holding it.
//
// All wire facts follow PROTOCOL.md (Arvados commit 913e3639); section
// numbers in comments refer to it.
package arvados
