/* Noise_*_25519_ChaChaPoly_BLAKE2b (Noise revision 34) on libsodium: the
 * CipherState, SymmetricState and HandshakeState of spec section 5, with
 * HMAC and HKDF built from BLAKE2b as section 4.3 defines them. Why this
 * exists and how it is used: see noise.h. Only libsodium and memory helpers
 * are called here (tests/core-purity.sh checks), and every secret is wiped
 * with sodium_memzero when it is no longer needed. The driver must have
 * called sodium_init(). */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "noise.h"

#define NONCE_BYTES crypto_aead_chacha20poly1305_IETF_NPUBBYTES

/* The only cipher suite; the pattern sits between the two. */
#define NAME_PREFIX "Noise_"
#define NAME_SUFFIX "_25519_ChaChaPoly_BLAKE2b"

enum token {
	TOK_NONE = 0,
	TOK_E,
	TOK_S,
	TOK_EE,
	TOK_ES,
	TOK_SE,
	TOK_SS,
	TOK_PSK,
};

/* Handshake patterns in the spec's notation (sections 7.4, 7.5 and 7.6):
 * pre-message lines, then "...", then the messages. psk modifiers are not
 * listed; they are applied to these by name (section 9). */
struct pattern_def {
	const char *name;
	const char *text;
};

static const struct pattern_def patterns[] = {
        /* one-way */
        {"N", "<- s\n"
              "...\n"
              "-> e, es"},
        {"K", "-> s\n"
              "<- s\n"
              "...\n"
              "-> e, es, ss"},
        {"X", "<- s\n"
              "...\n"
              "-> e, es, s, ss"},
        /* interactive, fundamental */
        {"NN", "-> e\n"
               "<- e, ee"},
        {"NK", "<- s\n"
               "...\n"
               "-> e, es\n"
               "<- e, ee"},
        {"NX", "-> e\n"
               "<- e, ee, s, es"},
        {"KN", "-> s\n"
               "...\n"
               "-> e\n"
               "<- e, ee, se"},
        {"KK", "-> s\n"
               "<- s\n"
               "...\n"
               "-> e, es, ss\n"
               "<- e, ee, se"},
        {"KX", "-> s\n"
               "...\n"
               "-> e\n"
               "<- e, ee, se, s, es"},
        {"XN", "-> e\n"
               "<- e, ee\n"
               "-> s, se"},
        {"XK", "<- s\n"
               "...\n"
               "-> e, es\n"
               "<- e, ee\n"
               "-> s, se"},
        {"XX", "-> e\n"
               "<- e, ee, s, es\n"
               "-> s, se"},
        {"IN", "-> e, s\n"
               "<- e, ee, se"},
        {"IK", "<- s\n"
               "...\n"
               "-> e, es, s, ss\n"
               "<- e, ee, se"},
        {"IX", "-> e, s\n"
               "<- e, ee, se, s, es"},
        /* interactive, deferred: the same tokens moved later, so they come
         * free with the table and are checked by the same vectors */
        {"NK1", "<- s\n"
                "...\n"
                "-> e\n"
                "<- e, ee, es"},
        {"NX1", "-> e\n"
                "<- e, ee, s\n"
                "-> es"},
        {"X1N", "-> e\n"
                "<- e, ee\n"
                "-> s\n"
                "<- se"},
        {"X1K", "<- s\n"
                "...\n"
                "-> e, es\n"
                "<- e, ee\n"
                "-> s\n"
                "<- se"},
        {"XK1", "<- s\n"
                "...\n"
                "-> e\n"
                "<- e, ee, es\n"
                "-> s, se"},
        {"X1K1", "<- s\n"
                 "...\n"
                 "-> e\n"
                 "<- e, ee, es\n"
                 "-> s\n"
                 "<- se"},
        {"X1X", "-> e\n"
                "<- e, ee, s, es\n"
                "-> s\n"
                "<- se"},
        {"XX1", "-> e\n"
                "<- e, ee, s\n"
                "-> es, s, se"},
        {"X1X1", "-> e\n"
                 "<- e, ee, s\n"
                 "-> es, s\n"
                 "<- se"},
        {"K1N", "-> s\n"
                "...\n"
                "-> e\n"
                "<- e, ee\n"
                "-> se"},
        {"K1K", "-> s\n"
                "<- s\n"
                "...\n"
                "-> e, es\n"
                "<- e, ee\n"
                "-> se"},
        {"KK1", "-> s\n"
                "<- s\n"
                "...\n"
                "-> e\n"
                "<- e, ee, se, es"},
        {"K1K1", "-> s\n"
                 "<- s\n"
                 "...\n"
                 "-> e\n"
                 "<- e, ee, es\n"
                 "-> se"},
        {"K1X", "-> s\n"
                "...\n"
                "-> e\n"
                "<- e, ee, s, es\n"
                "-> se"},
        {"KX1", "-> s\n"
                "...\n"
                "-> e\n"
                "<- e, ee, se, s\n"
                "-> es"},
        {"K1X1", "-> s\n"
                 "...\n"
                 "-> e\n"
                 "<- e, ee, s\n"
                 "-> se, es"},
        {"I1N", "-> e, s\n"
                "<- e, ee\n"
                "-> se"},
        {"I1K", "<- s\n"
                "...\n"
                "-> e, es, s\n"
                "<- e, ee\n"
                "-> se"},
        {"IK1", "<- s\n"
                "...\n"
                "-> e, s\n"
                "<- e, ee, se, es"},
        {"I1K1", "<- s\n"
                 "...\n"
                 "-> e, s\n"
                 "<- e, ee, es\n"
                 "-> se"},
        {"I1X", "-> e, s\n"
                "<- e, ee, s, es\n"
                "-> se"},
        {"IX1", "-> e, s\n"
                "<- e, ee, se, s\n"
                "-> es"},
        {"I1X1", "-> e, s\n"
                 "<- e, ee, s\n"
                 "-> se, es"},
};

#define PATTERN_COUNT (sizeof(patterns) / sizeof(patterns[0]))

/* Stands in for NULL buffers of length 0, which libsodium need not see. */
static const uint8_t empty[1];

/* ---- hash, HMAC, HKDF (spec 4.3) ------------------------------------- */

/* The hash calls below cannot fail: output length and key size are fixed
 * and valid for crypto_generichash. */
static void hash_update(crypto_generichash_state *st, const uint8_t *in,
                        size_t len)
{
	if (len > 0)
		crypto_generichash_update(st, in, len);
}

/* out = BLAKE2b-512(a || b). out may alias a or b. */
static void hash2(uint8_t out[FM__NOISE_HASH_LEN], const uint8_t *a,
                  size_t a_len, const uint8_t *b, size_t b_len)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, FM__NOISE_HASH_LEN);
	hash_update(&st, a, a_len);
	hash_update(&st, b, b_len);
	crypto_generichash_final(&st, out, FM__NOISE_HASH_LEN);
	sodium_memzero(&st, sizeof(st));
}

/* HMAC-BLAKE2b(key, a || b) as RFC 2104: the key (always HASHLEN bytes here,
 * so never longer than a block) is zero-padded to BLOCKLEN. The data comes
 * in two parts to spare HKDF a concatenation buffer. */
static void hmac(uint8_t out[FM__NOISE_HASH_LEN],
                 const uint8_t key[FM__NOISE_HASH_LEN], const uint8_t *a,
                 size_t a_len, const uint8_t *b, size_t b_len)
{
	uint8_t pad[FM__NOISE_BLOCK_LEN];
	uint8_t inner[FM__NOISE_HASH_LEN];
	crypto_generichash_state st;
	size_t i;

	memset(pad, 0x36, sizeof(pad));
	for (i = 0; i < FM__NOISE_HASH_LEN; i++)
		pad[i] ^= key[i];
	crypto_generichash_init(&st, NULL, 0, FM__NOISE_HASH_LEN);
	hash_update(&st, pad, sizeof(pad));
	hash_update(&st, a, a_len);
	hash_update(&st, b, b_len);
	crypto_generichash_final(&st, inner, sizeof(inner));

	memset(pad, 0x5c, sizeof(pad));
	for (i = 0; i < FM__NOISE_HASH_LEN; i++)
		pad[i] ^= key[i];
	crypto_generichash_init(&st, NULL, 0, FM__NOISE_HASH_LEN);
	hash_update(&st, pad, sizeof(pad));
	hash_update(&st, inner, sizeof(inner));
	crypto_generichash_final(&st, out, FM__NOISE_HASH_LEN);

	sodium_memzero(pad, sizeof(pad));
	sodium_memzero(inner, sizeof(inner));
	sodium_memzero(&st, sizeof(st));
}

/* HKDF(chaining_key, ikm, 2 or 3): out3 NULL for two outputs. The outputs
 * must not alias ck. */
static void hkdf(const uint8_t ck[FM__NOISE_HASH_LEN], const uint8_t *ikm,
                 size_t ikm_len, uint8_t out1[FM__NOISE_HASH_LEN],
                 uint8_t out2[FM__NOISE_HASH_LEN], uint8_t *out3)
{
	static const uint8_t one = 0x01, two = 0x02, three = 0x03;
	uint8_t temp_key[FM__NOISE_HASH_LEN];

	hmac(temp_key, ck, ikm, ikm_len, NULL, 0);
	hmac(out1, temp_key, &one, 1, NULL, 0);
	hmac(out2, temp_key, out1, FM__NOISE_HASH_LEN, &two, 1);
	if (out3 != NULL)
		hmac(out3, temp_key, out2, FM__NOISE_HASH_LEN, &three, 1);
	sodium_memzero(temp_key, sizeof(temp_key));
}

/* ---- CipherState (spec 5.1) ------------------------------------------- */

/* 32 bits of zeros, then the 64-bit counter little-endian (spec 12.3). */
static void nonce_encode(uint8_t out[NONCE_BYTES], uint64_t n)
{
	size_t i;

	memset(out, 0, 4);
	for (i = 0; i < 8; i++)
		out[4 + i] = (uint8_t)(n >> (8 * i));
}

/* ENCRYPT(k, n, ad, plaintext): writes len + 16 bytes. No nonce policy
 * here; Rekey needs the reserved nonce. */
static void aead_seal(const uint8_t k[FM__NOISE_KEY_LEN], uint64_t n,
                      const uint8_t *ad, size_t ad_len, const uint8_t *plain,
                      size_t len, uint8_t *out)
{
	uint8_t nonce[NONCE_BYTES];
	unsigned long long out_len;

	nonce_encode(nonce, n);
	/* Cannot fail for len <= FM__NOISE_MAX_MESSAGE. */
	crypto_aead_chacha20poly1305_ietf_encrypt(
	        out, &out_len, len > 0 ? plain : empty, len,
	        ad_len > 0 ? ad : empty, ad_len, NULL, nonce, k);
}

/* DECRYPT(k, n, ad, ciphertext) of ct_len >= 16 bytes into ct_len - 16. */
static int aead_open(const uint8_t k[FM__NOISE_KEY_LEN], uint64_t n,
                     const uint8_t *ad, size_t ad_len, const uint8_t *ct,
                     size_t ct_len, uint8_t *out)
{
	uint8_t nonce[NONCE_BYTES];
	uint8_t scratch[1];
	unsigned long long out_len;

	nonce_encode(nonce, n);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(
	            ct_len > FM__NOISE_TAG_LEN ? out : scratch, &out_len, NULL,
	            ct, ct_len, ad_len > 0 ? ad : empty, ad_len, nonce, k) != 0)
		return -EBADMSG;
	return 0;
}

static void cipher_init_key(fm__noise_cipher *c, const uint8_t *key)
{
	memcpy(c->k, key, FM__NOISE_KEY_LEN);
	c->n = 0;
	c->has_key = 1;
}

int fm__noise_encrypt_with_nonce(const fm__noise_cipher *c, uint64_t nonce,
                                 const uint8_t *ad, size_t ad_len,
                                 const uint8_t *plain, size_t plain_len,
                                 uint8_t *out, size_t out_cap, size_t *out_len)
{
	if (out_len != NULL)
		*out_len = 0;
	if (c == NULL || out == NULL || out_len == NULL ||
	    (ad == NULL && ad_len > 0) || (plain == NULL && plain_len > 0))
		return -EINVAL;
	if (!c->has_key)
		return -EINVAL;
	if (nonce == FM__NOISE_NONCE_RESERVED)
		return -EOVERFLOW;
	if (plain_len > FM__NOISE_MAX_PLAINTEXT)
		return -EMSGSIZE;
	if (out_cap < plain_len + FM__NOISE_TAG_LEN)
		return -ENOBUFS;
	aead_seal(c->k, nonce, ad, ad_len, plain, plain_len, out);
	*out_len = plain_len + FM__NOISE_TAG_LEN;
	return 0;
}

int fm__noise_decrypt_with_nonce(const fm__noise_cipher *c, uint64_t nonce,
                                 const uint8_t *ad, size_t ad_len,
                                 const uint8_t *ct, size_t ct_len, uint8_t *out,
                                 size_t out_cap, size_t *out_len)
{
	int rc;

	if (out_len != NULL)
		*out_len = 0;
	if (c == NULL || out_len == NULL || (ad == NULL && ad_len > 0) ||
	    (ct == NULL && ct_len > 0) || (out == NULL && out_cap > 0))
		return -EINVAL;
	if (!c->has_key)
		return -EINVAL;
	if (nonce == FM__NOISE_NONCE_RESERVED)
		return -EOVERFLOW;
	if (ct_len > FM__NOISE_MAX_MESSAGE)
		return -EMSGSIZE;
	if (ct_len < FM__NOISE_TAG_LEN)
		return -EBADMSG;
	if (out_cap < ct_len - FM__NOISE_TAG_LEN)
		return -ENOBUFS;
	rc = aead_open(c->k, nonce, ad, ad_len, ct, ct_len, out);
	if (rc != 0)
		return rc;
	*out_len = ct_len - FM__NOISE_TAG_LEN;
	return 0;
}

int fm__noise_encrypt(fm__noise_cipher *c, const uint8_t *ad, size_t ad_len,
                      const uint8_t *plain, size_t plain_len, uint8_t *out,
                      size_t out_cap, size_t *out_len)
{
	int rc;

	if (c == NULL) {
		if (out_len != NULL)
			*out_len = 0;
		return -EINVAL;
	}
	rc = fm__noise_encrypt_with_nonce(c, c->n, ad, ad_len, plain, plain_len,
	                                  out, out_cap, out_len);
	if (rc == 0)
		c->n++;
	return rc;
}

int fm__noise_decrypt(fm__noise_cipher *c, const uint8_t *ad, size_t ad_len,
                      const uint8_t *ct, size_t ct_len, uint8_t *out,
                      size_t out_cap, size_t *out_len)
{
	int rc;

	if (c == NULL) {
		if (out_len != NULL)
			*out_len = 0;
		return -EINVAL;
	}
	rc = fm__noise_decrypt_with_nonce(c, c->n, ad, ad_len, ct, ct_len, out,
	                                  out_cap, out_len);
	if (rc == 0)
		c->n++;
	return rc;
}

int fm__noise_set_nonce(fm__noise_cipher *c, uint64_t nonce)
{
	if (c == NULL)
		return -EINVAL;
	c->n = nonce;
	return 0;
}

int fm__noise_rekey(fm__noise_cipher *c)
{
	static const uint8_t zeros[FM__NOISE_KEY_LEN];
	uint8_t buf[FM__NOISE_KEY_LEN + FM__NOISE_TAG_LEN];

	if (c == NULL || !c->has_key)
		return -EINVAL;
	aead_seal(c->k, FM__NOISE_NONCE_RESERVED, NULL, 0, zeros, sizeof(zeros),
	          buf);
	memcpy(c->k, buf, FM__NOISE_KEY_LEN);
	sodium_memzero(buf, sizeof(buf));
	return 0;
}

void fm__noise_wipe_cipher(fm__noise_cipher *c)
{
	if (c != NULL)
		sodium_memzero(c, sizeof(*c));
}

/* ---- SymmetricState (spec 5.2) ---------------------------------------- */

static void mix_hash(fm__noise_handshake *hs, const uint8_t *data, size_t len)
{
	hash2(hs->h, hs->h, sizeof(hs->h), data, len);
}

static void mix_key(fm__noise_handshake *hs, const uint8_t *ikm, size_t len)
{
	uint8_t ck[FM__NOISE_HASH_LEN];
	uint8_t k[FM__NOISE_HASH_LEN];

	hkdf(hs->ck, ikm, len, ck, k, NULL);
	memcpy(hs->ck, ck, sizeof(ck));
	/* HASHLEN is 64: the key is the first 32 bytes. */
	cipher_init_key(&hs->cipher, k);
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(k, sizeof(k));
}

static void mix_key_and_hash(fm__noise_handshake *hs, const uint8_t *ikm,
                             size_t len)
{
	uint8_t ck[FM__NOISE_HASH_LEN];
	uint8_t th[FM__NOISE_HASH_LEN];
	uint8_t k[FM__NOISE_HASH_LEN];

	hkdf(hs->ck, ikm, len, ck, th, k);
	memcpy(hs->ck, ck, sizeof(ck));
	mix_hash(hs, th, sizeof(th));
	cipher_init_key(&hs->cipher, k);
	sodium_memzero(ck, sizeof(ck));
	sodium_memzero(th, sizeof(th));
	sodium_memzero(k, sizeof(k));
}

/* Writes len (+16 once a key is set) bytes to out. */
static int encrypt_and_hash(fm__noise_handshake *hs, const uint8_t *plain,
                            size_t len, uint8_t *out, size_t *out_len)
{
	fm__noise_cipher *c = &hs->cipher;

	if (c->has_key) {
		if (c->n == FM__NOISE_NONCE_RESERVED)
			return -EOVERFLOW;
		aead_seal(c->k, c->n, hs->h, sizeof(hs->h), plain, len, out);
		c->n++;
		*out_len = len + FM__NOISE_TAG_LEN;
	} else {
		if (len > 0)
			memmove(out, plain, len);
		*out_len = len;
	}
	mix_hash(hs, out, *out_len);
	return 0;
}

/* ct_len is exactly the field's length; writes ct_len (-16 with a key). */
static int decrypt_and_hash(fm__noise_handshake *hs, const uint8_t *ct,
                            size_t ct_len, uint8_t *out)
{
	fm__noise_cipher *c = &hs->cipher;
	int rc;

	if (c->has_key) {
		if (c->n == FM__NOISE_NONCE_RESERVED)
			return -EOVERFLOW;
		if (ct_len < FM__NOISE_TAG_LEN)
			return -EBADMSG;
		rc = aead_open(c->k, c->n, hs->h, sizeof(hs->h), ct, ct_len,
		               out);
		if (rc != 0)
			return rc;
		c->n++;
	} else if (ct_len > 0) {
		memcpy(out, ct, ct_len);
	}
	mix_hash(hs, ct, ct_len);
	return 0;
}

/* ---- patterns ---------------------------------------------------------- */

static enum token token_from_word(const char *w, size_t len)
{
	static const struct {
		const char *word;
		enum token tok;
	} words[] = {
	        {"e", TOK_E},     {"s", TOK_S},   {"ee", TOK_EE},
	        {"es", TOK_ES},   {"se", TOK_SE}, {"ss", TOK_SS},
	        {"psk", TOK_PSK},
	};
	size_t i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strlen(words[i].word) == len &&
		    memcmp(words[i].word, w, len) == 0)
			return words[i].tok;
	return TOK_NONE;
}

/* Parses one pattern of the table into hs; pre_s[0] / pre_s[1] report a
 * pre-message "s" of the initiator / responder. Pre-message "e" belongs to
 * fallback patterns only and is refused. A malformed entry is a bug in the
 * table, reported as -EPROTONOSUPPORT (the tests parse every entry). */
static int parse_pattern(fm__noise_handshake *hs, const char *text,
                         uint8_t pre_s[2])
{
	const char *p = text;
	int in_pre = strstr(text, "...") != NULL;

	hs->message_count = 0;
	pre_s[0] = pre_s[1] = 0;
	while (*p != '\0') {
		const char *eol = strchr(p, '\n');
		size_t len = eol != NULL ? (size_t)(eol - p) : strlen(p);
		const char *end = p + len;
		const char *q;
		uint8_t idx = hs->message_count;
		int from_initiator;

		if (len == 3 && memcmp(p, "...", 3) == 0) {
			if (!in_pre)
				return -EPROTONOSUPPORT;
			in_pre = 0;
			goto next;
		}
		if (len < 4 || p[2] != ' ')
			return -EPROTONOSUPPORT;
		if (memcmp(p, "->", 2) == 0)
			from_initiator = 1;
		else if (memcmp(p, "<-", 2) == 0)
			from_initiator = 0;
		else
			return -EPROTONOSUPPORT;
		q = p + 3;
		if (in_pre) {
			/* pre-messages: just "s", at most once per side */
			if (token_from_word(q, (size_t)(end - q)) != TOK_S ||
			    pre_s[!from_initiator])
				return -EPROTONOSUPPORT;
			pre_s[!from_initiator] = 1;
			goto next;
		}
		/* messages alternate, the initiator first (spec 7.1) */
		if (idx >= FM__NOISE_MAX_HANDSHAKE_MESSAGES ||
		    from_initiator != (idx % 2 == 0))
			return -EPROTONOSUPPORT;
		hs->from_initiator[idx] = (uint8_t)from_initiator;
		hs->token_count[idx] = 0;
		while (q < end) {
			const char *comma = memchr(q, ',', (size_t)(end - q));
			const char *w_end = comma != NULL ? comma : end;
			enum token t = token_from_word(q, (size_t)(w_end - q));

			if (t == TOK_NONE || t == TOK_PSK ||
			    hs->token_count[idx] >= FM__NOISE_MAX_TOKENS)
				return -EPROTONOSUPPORT;
			hs->tokens[idx][hs->token_count[idx]++] = (uint8_t)t;
			q = w_end;
			if (q < end) /* skip ", " */
				q += (q + 1 < end && q[1] == ' ') ? 2 : 1;
		}
		if (hs->token_count[idx] == 0)
			return -EPROTONOSUPPORT;
		hs->message_count++;
	next:
		p = eol != NULL ? eol + 1 : end;
	}
	if (in_pre || hs->message_count == 0)
		return -EPROTONOSUPPORT;
	return 0;
}

/* Applies "psk0+psk2"-style modifiers (spec 9.2): psk0 puts a psk token at
 * the start of the first message, pskN at the end of the Nth. */
static int apply_modifiers(fm__noise_handshake *hs, const char *mod, size_t len)
{
	const char *end = mod + len;
	unsigned seen = 0;

	while (mod < end) {
		const char *plus = memchr(mod, '+', (size_t)(end - mod));
		const char *m_end = plus != NULL ? plus : end;
		size_t m_len = (size_t)(m_end - mod);
		unsigned n;
		uint8_t idx, *count;

		/* "psk" and one digit: no pattern has 10 messages */
		if (m_len != 4 || memcmp(mod, "psk", 3) != 0 || mod[3] < '0' ||
		    mod[3] > '9')
			return -EPROTONOSUPPORT;
		n = (unsigned)(mod[3] - '0');
		if (n > hs->message_count || (seen & (1u << n)) != 0 ||
		    hs->psk_count >= FM__NOISE_MAX_PSKS)
			return -EPROTONOSUPPORT;
		seen |= 1u << n;
		idx = (uint8_t)(n == 0 ? 0 : n - 1);
		count = &hs->token_count[idx];
		if (*count >= FM__NOISE_MAX_TOKENS)
			return -EPROTONOSUPPORT;
		if (n == 0) {
			memmove(&hs->tokens[idx][1], &hs->tokens[idx][0],
			        *count);
			hs->tokens[idx][0] = TOK_PSK;
		} else {
			hs->tokens[idx][*count] = TOK_PSK;
		}
		(*count)++;
		hs->psk_count++;
		hs->psk_mode = 1;
		mod = plus != NULL ? plus + 1 : end;
		if (plus != NULL && mod == end)
			return -EPROTONOSUPPORT; /* trailing '+' */
	}
	return 0;
}

/* Splits "Noise_<pattern>_25519_ChaChaPoly_BLAKE2b" and loads the pattern:
 * base name from the table, then its modifiers. */
static int load_protocol(fm__noise_handshake *hs, const char *name,
                         size_t name_len, uint8_t pre_s[2])
{
	const size_t pre_len = sizeof(NAME_PREFIX) - 1;
	const size_t suf_len = sizeof(NAME_SUFFIX) - 1;
	const char *pat;
	size_t pat_len, base_len, i;
	int rc;

	if (name_len <= pre_len + suf_len ||
	    memcmp(name, NAME_PREFIX, pre_len) != 0 ||
	    memcmp(name + name_len - suf_len, NAME_SUFFIX, suf_len) != 0)
		return -EPROTONOSUPPORT;
	pat = name + pre_len;
	pat_len = name_len - pre_len - suf_len;
	/* base names are capitals and digits; modifiers start lowercase */
	for (base_len = 0; base_len < pat_len; base_len++) {
		char ch = pat[base_len];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')))
			break;
	}
	for (i = 0; i < PATTERN_COUNT; i++) {
		if (strlen(patterns[i].name) == base_len &&
		    memcmp(patterns[i].name, pat, base_len) == 0)
			break;
	}
	if (base_len == 0 || i == PATTERN_COUNT)
		return -EPROTONOSUPPORT;
	rc = parse_pattern(hs, patterns[i].text, pre_s);
	if (rc != 0)
		return rc;
	hs->one_way = hs->message_count == 1;
	return apply_modifiers(hs, pat + base_len, pat_len - base_len);
}

/* Whether the pattern ever needs our static key. */
static int uses_local_static(const fm__noise_handshake *hs,
                             const uint8_t pre_s[2])
{
	size_t i, j;

	if (pre_s[hs->initiator ? 0 : 1])
		return 1;
	for (i = 0; i < hs->message_count; i++) {
		int ours = hs->from_initiator[i] == hs->initiator;

		for (j = 0; j < hs->token_count[i]; j++) {
			uint8_t t = hs->tokens[i][j];

			if ((t == TOK_S && ours) || t == TOK_SS ||
			    (t == TOK_SE && hs->initiator) ||
			    (t == TOK_ES && !hs->initiator))
				return 1;
		}
	}
	return 0;
}

/* ---- HandshakeState (spec 5.3) ---------------------------------------- */

/* After any error the handshake is unusable: keep nothing but the state. */
static void handshake_fail(fm__noise_handshake *hs)
{
	sodium_memzero(hs, sizeof(*hs));
	hs->state = FM__NOISE_HS_FAILED;
}

int fm__noise_handshake_init(fm__noise_handshake *hs, const char *protocol_name,
                             int initiator, const uint8_t *prologue,
                             size_t prologue_len, const uint8_t *s_priv,
                             const uint8_t *rs_pub, const uint8_t *psks,
                             size_t psk_count, const uint8_t *e_priv)
{
	uint8_t pre_s[2];
	size_t name_len;
	int rc;

	if (hs == NULL)
		return -EINVAL;
	sodium_memzero(hs, sizeof(*hs));
	if (protocol_name == NULL || (prologue == NULL && prologue_len > 0) ||
	    (psks == NULL && psk_count > 0)) {
		rc = -EINVAL;
		goto fail;
	}
	for (name_len = 0; name_len <= FM__NOISE_MAX_PROTOCOL_NAME; name_len++)
		if (protocol_name[name_len] == '\0')
			break;
	if (name_len > FM__NOISE_MAX_PROTOCOL_NAME) {
		rc = -EINVAL;
		goto fail;
	}
	hs->initiator = initiator != 0;
	rc = load_protocol(hs, protocol_name, name_len, pre_s);
	if (rc != 0)
		goto fail;
	/* Exactly the keys the pattern calls for. */
	if (psk_count != hs->psk_count ||
	    (s_priv != NULL) != uses_local_static(hs, pre_s) ||
	    (rs_pub != NULL) != pre_s[hs->initiator ? 1 : 0]) {
		rc = -EINVAL;
		goto fail;
	}
	if (s_priv != NULL) {
		memcpy(hs->s_priv, s_priv, FM__NOISE_DH_LEN);
		if (crypto_scalarmult_base(hs->s_pub, hs->s_priv) != 0) {
			rc = -EINVAL;
			goto fail;
		}
		hs->has_s = 1;
	}
	if (rs_pub != NULL) {
		memcpy(hs->rs, rs_pub, FM__NOISE_DH_LEN);
		hs->has_rs = 1;
	}
	if (psk_count > 0)
		memcpy(hs->psks, psks, psk_count * FM__NOISE_PSK_LEN);

	/* InitializeSymmetric(protocol_name) */
	if (name_len <= FM__NOISE_HASH_LEN)
		memcpy(hs->h, protocol_name, name_len);
	else
		hash2(hs->h, (const uint8_t *)protocol_name, name_len, NULL, 0);
	memcpy(hs->ck, hs->h, sizeof(hs->ck));
	mix_hash(hs, prologue, prologue_len);
	/* Pre-messages: the initiator's keys are hashed first. */
	if (pre_s[0])
		mix_hash(hs, hs->initiator ? hs->s_pub : hs->rs,
		         FM__NOISE_DH_LEN);
	if (pre_s[1])
		mix_hash(hs, hs->initiator ? hs->rs : hs->s_pub,
		         FM__NOISE_DH_LEN);
	hs->state = FM__NOISE_HS_ACTIVE;
	if (e_priv != NULL) {
		rc = fm__noise_set_ephemeral(hs, e_priv);
		if (rc != 0)
			goto fail;
	}
	return 0;
fail:
	sodium_memzero(hs, sizeof(*hs));
	return rc;
}

int fm__noise_set_ephemeral(fm__noise_handshake *hs,
                            const uint8_t e_priv[FM__NOISE_DH_LEN])
{
	if (hs == NULL || e_priv == NULL)
		return -EINVAL;
	if (hs->state != FM__NOISE_HS_ACTIVE || hs->e_sent)
		return -EPROTO;
	memcpy(hs->e_priv, e_priv, FM__NOISE_DH_LEN);
	if (crypto_scalarmult_base(hs->e_pub, hs->e_priv) != 0) {
		sodium_memzero(hs->e_priv, sizeof(hs->e_priv));
		hs->has_e = 0;
		return -EINVAL;
	}
	hs->has_e = 1;
	return 0;
}

/* Bytes the current message takes besides its payload, given the key state
 * at its start (spec 5.3: "s" and the payload grow by a tag once a key is
 * set; "e" sets one in PSK mode, every DH and psk token sets one). */
static size_t message_overhead(const fm__noise_handshake *hs)
{
	uint8_t idx = hs->message_index;
	int has_key = hs->cipher.has_key;
	size_t len = 0, i;

	for (i = 0; i < hs->token_count[idx]; i++) {
		switch (hs->tokens[idx][i]) {
		case TOK_E:
			len += FM__NOISE_DH_LEN;
			if (hs->psk_mode)
				has_key = 1;
			break;
		case TOK_S:
			len += FM__NOISE_DH_LEN +
			       (has_key ? FM__NOISE_TAG_LEN : 0);
			break;
		default:
			has_key = 1;
			break;
		}
	}
	return len + (has_key ? FM__NOISE_TAG_LEN : 0);
}

/* ee, es, se, ss: MixKey(DH(...)) with the roles of spec 5.3. */
static int mix_dh(fm__noise_handshake *hs, uint8_t tok)
{
	const uint8_t *priv = NULL, *pub = NULL;
	int local_e, remote_e;
	uint8_t shared[FM__NOISE_DH_LEN];

	switch (tok) {
	case TOK_EE:
		local_e = remote_e = 1;
		break;
	case TOK_ES: /* initiator's e, responder's s */
		local_e = hs->initiator;
		remote_e = !hs->initiator;
		break;
	case TOK_SE: /* initiator's s, responder's e */
		local_e = !hs->initiator;
		remote_e = hs->initiator;
		break;
	case TOK_SS:
		local_e = remote_e = 0;
		break;
	default:
		return -EPROTO;
	}
	if (local_e ? hs->has_e : hs->has_s)
		priv = local_e ? hs->e_priv : hs->s_priv;
	if (remote_e ? hs->has_re : hs->has_rs)
		pub = remote_e ? hs->re : hs->rs;
	if (priv == NULL || pub == NULL)
		return -EPROTO;
	/* crypto_scalarmult fails when the result is all zeros: the peer sent
	 * a low-order point, and a zero secret must never become a key. */
	if (crypto_scalarmult(shared, priv, pub) != 0) {
		sodium_memzero(shared, sizeof(shared));
		return -EBADMSG;
	}
	mix_key(hs, shared, sizeof(shared));
	sodium_memzero(shared, sizeof(shared));
	return 0;
}

/* The pattern's tokens that are the same for reader and writer. */
static int mix_token(fm__noise_handshake *hs, uint8_t tok)
{
	if (tok != TOK_PSK)
		return mix_dh(hs, tok);
	if (hs->psk_index >= hs->psk_count)
		return -EPROTO;
	mix_key_and_hash(hs, hs->psks[hs->psk_index], FM__NOISE_PSK_LEN);
	hs->psk_index++;
	return 0;
}

/* The message has been processed: move on, and once the last one is done
 * drop the private keys, which only split() could still want (it does not).
 */
static void message_done(fm__noise_handshake *hs)
{
	hs->message_index++;
	if (hs->message_index < hs->message_count)
		return;
	hs->state = FM__NOISE_HS_DONE;
	sodium_memzero(hs->e_priv, sizeof(hs->e_priv));
	sodium_memzero(hs->s_priv, sizeof(hs->s_priv));
	sodium_memzero(hs->psks, sizeof(hs->psks));
	hs->has_e = hs->has_s = 0;
}

static int message_has_e(const fm__noise_handshake *hs)
{
	uint8_t idx = hs->message_index;
	size_t i;

	for (i = 0; i < hs->token_count[idx]; i++)
		if (hs->tokens[idx][i] == TOK_E)
			return 1;
	return 0;
}

int fm__noise_write_message(fm__noise_handshake *hs, const uint8_t *payload,
                            size_t payload_len, uint8_t *out, size_t out_cap,
                            size_t *out_len)
{
	size_t total, off = 0, n, i;
	uint8_t idx;
	int rc;

	if (out_len != NULL)
		*out_len = 0;
	if (hs == NULL || out == NULL || out_len == NULL ||
	    (payload == NULL && payload_len > 0))
		return -EINVAL;
	if (hs->state != FM__NOISE_HS_ACTIVE)
		return -EPROTO;
	idx = hs->message_index;
	if (hs->from_initiator[idx] != hs->initiator)
		return -EPROTO;
	if (message_has_e(hs) && !hs->has_e)
		return -EINVAL; /* fm__noise_set_ephemeral() first */
	total = message_overhead(hs);
	if (payload_len > FM__NOISE_MAX_MESSAGE - total)
		return -EMSGSIZE;
	total += payload_len;
	if (out_cap < total)
		return -ENOBUFS;

	for (i = 0; i < hs->token_count[idx]; i++) {
		uint8_t tok = hs->tokens[idx][i];

		switch (tok) {
		case TOK_E:
			memcpy(out + off, hs->e_pub, FM__NOISE_DH_LEN);
			off += FM__NOISE_DH_LEN;
			mix_hash(hs, hs->e_pub, FM__NOISE_DH_LEN);
			if (hs->psk_mode)
				mix_key(hs, hs->e_pub, FM__NOISE_DH_LEN);
			hs->e_sent = 1;
			break;
		case TOK_S:
			rc = encrypt_and_hash(hs, hs->s_pub, FM__NOISE_DH_LEN,
			                      out + off, &n);
			if (rc != 0)
				goto fail;
			off += n;
			break;
		default:
			rc = mix_token(hs, tok);
			if (rc != 0)
				goto fail;
			break;
		}
	}
	rc = encrypt_and_hash(hs, payload, payload_len, out + off, &n);
	if (rc != 0)
		goto fail;
	off += n;
	if (off != total) { /* the overhead forecast and the tokens disagree */
		rc = -EPROTO;
		goto fail;
	}
	*out_len = off;
	message_done(hs);
	return 0;
fail:
	sodium_memzero(out, total);
	handshake_fail(hs);
	return rc;
}

int fm__noise_read_message(fm__noise_handshake *hs, const uint8_t *msg,
                           size_t msg_len, uint8_t *payload, size_t payload_cap,
                           size_t *payload_len)
{
	uint8_t rs[FM__NOISE_DH_LEN];
	size_t need, off = 0, i;
	uint8_t idx;
	int rc;

	if (payload_len != NULL)
		*payload_len = 0;
	if (hs == NULL || payload_len == NULL || (msg == NULL && msg_len > 0) ||
	    (payload == NULL && payload_cap > 0))
		return -EINVAL;
	if (hs->state != FM__NOISE_HS_ACTIVE)
		return -EPROTO;
	idx = hs->message_index;
	if (hs->from_initiator[idx] == hs->initiator)
		return -EPROTO;
	if (msg_len > FM__NOISE_MAX_MESSAGE) {
		rc = -EMSGSIZE;
		goto fail;
	}
	need = message_overhead(hs);
	if (msg_len < need) {
		rc = -EBADMSG; /* truncated */
		goto fail;
	}
	if (payload_cap < msg_len - need)
		return -ENOBUFS;

	for (i = 0; i < hs->token_count[idx]; i++) {
		uint8_t tok = hs->tokens[idx][i];
		size_t n;

		switch (tok) {
		case TOK_E:
			memcpy(hs->re, msg + off, FM__NOISE_DH_LEN);
			hs->has_re = 1;
			off += FM__NOISE_DH_LEN;
			mix_hash(hs, hs->re, FM__NOISE_DH_LEN);
			if (hs->psk_mode)
				mix_key(hs, hs->re, FM__NOISE_DH_LEN);
			break;
		case TOK_S:
			n = FM__NOISE_DH_LEN +
			    (hs->cipher.has_key ? FM__NOISE_TAG_LEN : 0);
			rc = decrypt_and_hash(hs, msg + off, n, rs);
			if (rc != 0)
				goto fail;
			memcpy(hs->rs, rs, sizeof(rs));
			hs->has_rs = 1;
			off += n;
			break;
		default:
			rc = mix_token(hs, tok);
			if (rc != 0)
				goto fail;
			break;
		}
	}
	/* payload is NULL only when the payload is empty */
	rc = decrypt_and_hash(hs, msg + off, msg_len - off, payload);
	if (rc != 0)
		goto fail;
	*payload_len = msg_len - need;
	message_done(hs);
	return 0;
fail:
	/* nothing was written to payload: the tag is checked first */
	handshake_fail(hs);
	return rc;
}

int fm__noise_handshake_done(const fm__noise_handshake *hs)
{
	return hs != NULL && (hs->state == FM__NOISE_HS_DONE ||
	                      hs->state == FM__NOISE_HS_SPLIT);
}

int fm__noise_handshake_one_way(const fm__noise_handshake *hs)
{
	return hs != NULL && hs->one_way;
}

int fm__noise_split(fm__noise_handshake *hs, fm__noise_cipher *send,
                    fm__noise_cipher *recv)
{
	uint8_t k1[FM__NOISE_HASH_LEN];
	uint8_t k2[FM__NOISE_HASH_LEN];

	if (hs == NULL || send == NULL || recv == NULL || send == recv)
		return -EINVAL;
	if (hs->state != FM__NOISE_HS_DONE)
		return -EPROTO;
	hkdf(hs->ck, NULL, 0, k1, k2, NULL);
	sodium_memzero(send, sizeof(*send));
	sodium_memzero(recv, sizeof(*recv));
	/* k1 protects initiator -> responder, k2 the other way. One-way
	 * patterns discard k2 (spec 7.4). */
	if (hs->initiator) {
		cipher_init_key(send, k1);
		if (!hs->one_way)
			cipher_init_key(recv, k2);
	} else {
		cipher_init_key(recv, k1);
		if (!hs->one_way)
			cipher_init_key(send, k2);
	}
	sodium_memzero(k1, sizeof(k1));
	sodium_memzero(k2, sizeof(k2));
	sodium_memzero(hs->ck, sizeof(hs->ck));
	sodium_memzero(&hs->cipher, sizeof(hs->cipher));
	hs->state = FM__NOISE_HS_SPLIT;
	return 0;
}

int fm__noise_handshake_hash(const fm__noise_handshake *hs,
                             uint8_t out[FM__NOISE_HASH_LEN])
{
	if (hs == NULL || out == NULL)
		return -EINVAL;
	if (!fm__noise_handshake_done(hs))
		return -EPROTO;
	memcpy(out, hs->h, FM__NOISE_HASH_LEN);
	return 0;
}

int fm__noise_remote_static(const fm__noise_handshake *hs,
                            uint8_t out[FM__NOISE_DH_LEN])
{
	if (hs == NULL || out == NULL)
		return -EINVAL;
	if (!hs->has_rs || hs->state == FM__NOISE_HS_FAILED ||
	    hs->state == FM__NOISE_HS_UNSET)
		return -ENOENT;
	memcpy(out, hs->rs, FM__NOISE_DH_LEN);
	return 0;
}

void fm__noise_wipe_handshake(fm__noise_handshake *hs)
{
	if (hs != NULL)
		sodium_memzero(hs, sizeof(*hs));
}
