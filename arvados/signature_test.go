package arvados

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The worked example of PROTOCOL 3.1.
func TestSignLocator_protocolExample(t *testing.T) {
	key := []byte("example-blob-signing-key")
	exp := time.Unix(0x65a1b2c3, 0)
	loc := "90a42f3c1b83b30a417ef011f08237da+45"
	for _, tc := range []struct{ token, want string }{
		{"v2/zzzzz-gj3su-0123456789abcde/examplesecret0123456789", loc + "+A4d5c3bb7c7290ddbe90406c8d2f35acc57f83626@65a1b2c3"},
		{"examplesecret0123456789", loc + "+Acd6c08773e4d0114e921a17a11dfc7e23e34d717@65a1b2c3"},
	} {
		t.Run(tc.token, func(t *testing.T) {
			assert.Equal(t, tc.want, SignLocator(loc, tc.token, exp, DefaultBlobSigningTTL, key))
			assert.NoError(t, VerifySignature(tc.want, tc.token, DefaultBlobSigningTTL, key, exp.Add(-time.Hour)))
		})
	}
}

func TestVerifySignature_failures(t *testing.T) {
	key := []byte("k")
	now := time.Unix(1_700_000_000, 0)
	exp := now.Add(time.Hour)
	tok := "v2/zzzzz-gj3su-0123456789abcde/secret"
	signed := SignLocator("acbd18db4cc2f85cedef654fccc4a4d8+3", tok, exp, DefaultBlobSigningTTL, key)
	require.NoError(t, VerifySignature(signed, tok, DefaultBlobSigningTTL, key, now))
	assert.ErrorIs(t, VerifySignature(signed, "secret", DefaultBlobSigningTTL, key, now), ErrSignatureInvalid, "v1 spelling of the same secret")
	assert.ErrorIs(t, VerifySignature(signed, tok, DefaultBlobSigningTTL, []byte("other"), now), ErrSignatureInvalid)
	assert.ErrorIs(t, VerifySignature(signed, tok, time.Hour, key, now), ErrSignatureInvalid, "ttl is in the message")
	assert.ErrorIs(t, VerifySignature(signed, tok, DefaultBlobSigningTTL, key, exp), ErrSignatureExpired)
	assert.ErrorIs(t, VerifySignature("acbd18db4cc2f85cedef654fccc4a4d8+3", tok, DefaultBlobSigningTTL, key, now), ErrSignatureMissing)
	assert.ErrorIs(t, VerifySignature("acbd18db4cc2f85cedef654fccc4a4d8+3+Abad@123", tok, DefaultBlobSigningTTL, key, now), ErrSignatureInvalid)
	// Other hints before and after +A are accepted; re-signing puts +A last.
	withK := SignLocator("acbd18db4cc2f85cedef654fccc4a4d8+3+Kzzzzz", tok, exp, DefaultBlobSigningTTL, key)
	assert.Regexp(t, `^acbd18db4cc2f85cedef654fccc4a4d8\+3\+Kzzzzz\+A[0-9a-f]{40}@[0-9a-f]{8}$`, withK)
	assert.NoError(t, VerifySignature(withK+"+Zfoo", tok, DefaultBlobSigningTTL, key, now))
	assert.Equal(t, exp.Unix(), SignatureExpiry(signed).Unix())
}

func TestParseLocator(t *testing.T) {
	for _, tc := range []struct {
		in    string
		ok    bool
		size  int64
		hints int
	}{
		{"acbd18db4cc2f85cedef654fccc4a4d8+3", true, 3, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d8", true, -1, 0},
		{EmptyBlock, true, 0, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d8+3+K@zzzzz+Zfoo_bar-1", true, 3, 2},
		{"ACBD18DB4CC2F85CEDEF654FCCC4A4D8+3", false, 0, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d8+", false, 0, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d8++3", false, 0, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d8+Kzz+3", false, 0, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d8+3+kzz", false, 0, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d+3", false, 0, 0},
		{"acbd18db4cc2f85cedef654fccc4a4d8+-3", false, 0, 0},
	} {
		t.Run(tc.in, func(t *testing.T) {
			l, err := ParseLocator(tc.in)
			if !tc.ok {
				assert.ErrorIs(t, err, ErrInvalidLocator)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.size, l.Size)
			assert.Len(t, l.Hints, tc.hints)
			assert.Equal(t, tc.in, l.String())
		})
	}
	// The error names the string and what is wrong with it.
	for in, want := range map[string]string{
		"0:3:foo":                               `invalid locator: "0:3:foo": hash must be 32 lowercase hex digits`,
		"acbd18db4cc2f85cedef654fccc4a4d8++3":   `invalid locator: "acbd18db4cc2f85cedef654fccc4a4d8++3": empty hint`,
		"acbd18db4cc2f85cedef654fccc4a4d8+-3":   `invalid locator: "acbd18db4cc2f85cedef654fccc4a4d8+-3": bad hint "-3"`,
		"acbd18db4cc2f85cedef654fccc4a4d8+3x":   `invalid locator: "acbd18db4cc2f85cedef654fccc4a4d8+3x": bad size hint`,
		"acbd18db4cc2f85cedef654fccc4a4d8+3+kz": `invalid locator: "acbd18db4cc2f85cedef654fccc4a4d8+3+kz": bad hint "kz"`,
	} {
		_, err := ParseLocator(in)
		assert.EqualError(t, err, want)
	}
	assert.Equal(t, "acbd18db4cc2f85cedef654fccc4a4d8+3", StripHints("acbd18db4cc2f85cedef654fccc4a4d8+3+K@zzzzz+Afoo"))
	assert.Equal(t, EmptyBlock, LocatorFor(nil))
}
