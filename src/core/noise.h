/* The Noise Protocol Framework (revision 34) for the one cipher suite fedmesh
 * speaks, 25519_ChaChaPoly_BLAKE2b, on libsodium primitives. Sessions between
 * nodes are Noise handshakes (XXpsk3 with the federation key as PSK, or
 * IK/IKpsk2 when the responder's key is known) rather than a home-made
 * protocol, so that their security rests on a published, analysed design
 * and is checked byte for byte against the cacophony test vectors.
 *
 * Handshake patterns are data: a table of the spec's own notation
 * ("-> e, es, s, ss") parsed at init, with the pskN modifiers applied on top,
 * so adding a pattern is one line and not new code.
 *
 * Like the rest of the core this file does no I/O and draws no randomness:
 * the caller passes ephemeral private keys in (32 bytes from
 * fm_io.random_bytes), which also makes a simulated handshake replayable.
 * All state is in fixed-size structs owned by the caller; nothing allocates.
 *
 * Errors (negative errno): -EINVAL bad arguments or a key the pattern does
 * not call for; -EPROTONOSUPPORT unknown protocol name, pattern, modifier or
 * cipher suite; -EPROTO the call does not fit the handshake's state (not our
 * turn, already finished, or failed earlier); -ENOBUFS an output buffer is too
 * small (nothing changed, retry with a larger one); -EMSGSIZE over
 * FM__NOISE_MAX_MESSAGE; -EBADMSG a message failed to authenticate, was
 * truncated, or carried a key whose Diffie-Hellman result is zero;
 * -EOVERFLOW the nonce would be the reserved 2^64-1. */
#ifndef FM_CORE_NOISE_H
#define FM_CORE_NOISE_H

#include <stddef.h>
#include <stdint.h>

/* Sizes fixed by the cipher suite (spec sections 4 and 12). */
#define FM__NOISE_DH_LEN 32     /* X25519 public and private keys */
#define FM__NOISE_KEY_LEN 32    /* ChaChaPoly key */
#define FM__NOISE_TAG_LEN 16    /* Poly1305 tag */
#define FM__NOISE_HASH_LEN 64   /* BLAKE2b-512 */
#define FM__NOISE_BLOCK_LEN 128 /* BLAKE2b block, for HMAC */
#define FM__NOISE_PSK_LEN 32

/* Every Noise message, handshake or transport, is at most this long. */
#define FM__NOISE_MAX_MESSAGE 65535
/* Largest transport plaintext: one message minus its tag. */
#define FM__NOISE_MAX_PLAINTEXT (FM__NOISE_MAX_MESSAGE - FM__NOISE_TAG_LEN)
/* Longest protocol name the spec allows, without the NUL. */
#define FM__NOISE_MAX_PROTOCOL_NAME 255
/* Pattern bounds. The longest supported pattern has 4 messages (the deferred
 * X1K1 family); the widest message has 5 tokens (IX, KX) plus psk0 and psk1.
 */
#define FM__NOISE_MAX_HANDSHAKE_MESSAGES 4
#define FM__NOISE_MAX_TOKENS 8
/* PSK tokens per pattern (e.g. "NNpsk0+psk2" has two). */
#define FM__NOISE_MAX_PSKS 4
/* Nonce 2^64-1 is reserved by the spec (Rekey uses it); no message is ever
 * encrypted or decrypted with it. */
#define FM__NOISE_NONCE_RESERVED UINT64_MAX

/* A CipherState: key, next nonce, and whether a key is set. The transport
 * functions below refuse a cipher without a key, rather than pass plaintext
 * through as the handshake-internal EncryptWithAd() does. */
typedef struct fm__noise_cipher {
	uint8_t k[FM__NOISE_KEY_LEN];
	uint64_t n;
	uint8_t has_key;
} fm__noise_cipher;

enum fm__noise_hs_state {
	FM__NOISE_HS_UNSET = 0, /* zeroed or failed to initialise */
	FM__NOISE_HS_ACTIVE,    /* messages remain */
	FM__NOISE_HS_DONE,      /* all messages processed; split() next */
	FM__NOISE_HS_SPLIT,     /* keys handed out; only hash/remote left */
	FM__NOISE_HS_FAILED,    /* an error occurred: unusable (spec 5.3) */
};

/* A HandshakeState with its SymmetricState and the parsed pattern. Treat as
 * opaque; it is in the header only so that callers can embed it. */
typedef struct fm__noise_handshake {
	fm__noise_cipher cipher;
	uint8_t ck[FM__NOISE_HASH_LEN];
	uint8_t h[FM__NOISE_HASH_LEN];
	uint8_t s_priv[FM__NOISE_DH_LEN];
	uint8_t s_pub[FM__NOISE_DH_LEN];
	uint8_t e_priv[FM__NOISE_DH_LEN];
	uint8_t e_pub[FM__NOISE_DH_LEN];
	uint8_t rs[FM__NOISE_DH_LEN];
	uint8_t re[FM__NOISE_DH_LEN];
	uint8_t psks[FM__NOISE_MAX_PSKS][FM__NOISE_PSK_LEN];
	uint8_t tokens[FM__NOISE_MAX_HANDSHAKE_MESSAGES][FM__NOISE_MAX_TOKENS];
	uint8_t token_count[FM__NOISE_MAX_HANDSHAKE_MESSAGES];
	uint8_t from_initiator[FM__NOISE_MAX_HANDSHAKE_MESSAGES];
	uint8_t message_count;
	uint8_t message_index; /* next message to write or read */
	uint8_t psk_count;
	uint8_t psk_index; /* next PSK a psk token consumes */
	uint8_t initiator;
	uint8_t psk_mode; /* any psk modifier: "e" also does MixKey */
	uint8_t one_way;  /* N, K, X and their psk variants */
	uint8_t has_s, has_e, e_sent, has_rs, has_re;
	uint8_t state; /* enum fm__noise_hs_state */
} fm__noise_handshake;

/* Starts a handshake. protocol_name is the full name, e.g.
 * "Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b"; the pattern may be any
 * fundamental or deferred pattern of the spec with psk0..psk3 modifiers
 * joined by '+'. Keys are 32 bytes each:
 *   s_priv  our static private key: required exactly when the pattern uses
 *           our static key, otherwise must be NULL;
 *   rs_pub  the peer's static public key: required exactly when the pattern
 *           has it as a pre-message (the "<- s ..." of NK, IK, ...),
 *           otherwise must be NULL, so nobody believes an XX peer was pinned;
 *   psks    psk_count keys of 32 bytes back to back, in the order the
 *           pattern's psk tokens use them; psk_count must equal that number;
 *   e_priv  our ephemeral private key (fresh randomness, never reused), or
 *           NULL to supply it later with fm__noise_set_ephemeral().
 * hs is overwritten; on failure it is wiped and unusable. */
int fm__noise_handshake_init(fm__noise_handshake *hs, const char *protocol_name,
                             int initiator, const uint8_t *prologue,
                             size_t prologue_len, const uint8_t *s_priv,
                             const uint8_t *rs_pub, const uint8_t *psks,
                             size_t psk_count, const uint8_t *e_priv);
/* Sets the ephemeral private key before the message carrying our "e" is
 * written. -EPROTO once that message has gone out. */
int fm__noise_set_ephemeral(fm__noise_handshake *hs,
                            const uint8_t e_priv[FM__NOISE_DH_LEN]);

/* Writes the next handshake message with payload into out. -ENOBUFS when
 * out_cap is short (no state change); -EBADMSG if a DH with the peer's key
 * yields zero, after which the handshake is failed. out must not overlap
 * payload. */
int fm__noise_write_message(fm__noise_handshake *hs, const uint8_t *payload,
                            size_t payload_len, uint8_t *out, size_t out_cap,
                            size_t *out_len);
/* Reads the next handshake message and writes its payload. Any bad message
 * (truncated, oversize, unauthenticated, low-order key) fails the handshake
 * for good; -ENOBUFS (payload_cap short) changes nothing. payload must not
 * overlap msg. */
int fm__noise_read_message(fm__noise_handshake *hs, const uint8_t *msg,
                           size_t msg_len, uint8_t *payload, size_t payload_cap,
                           size_t *payload_len);
/* 1 when every handshake message has been processed (also after split). */
int fm__noise_handshake_done(const fm__noise_handshake *hs);
/* 1 for one-way patterns: only the initiator ever sends. */
int fm__noise_handshake_one_way(const fm__noise_handshake *hs);
/* Derives the transport ciphers, oriented for this side: send encrypts what
 * we send, recv decrypts what the peer sends. For one-way patterns the
 * initiator's recv and the responder's send have no key and refuse use.
 * Wipes the chaining key and our private keys; callable once. */
int fm__noise_split(fm__noise_handshake *hs, fm__noise_cipher *send,
                    fm__noise_cipher *recv);
/* The handshake hash h, for channel binding. Only once done. */
int fm__noise_handshake_hash(const fm__noise_handshake *hs,
                             uint8_t out[FM__NOISE_HASH_LEN]);
/* The peer's static public key if the pattern carried it (received or
 * pre-message); -ENOENT otherwise. The caller must still decide whether
 * it trusts that key. */
int fm__noise_remote_static(const fm__noise_handshake *hs,
                            uint8_t out[FM__NOISE_DH_LEN]);

/* Transport messages with the cipher's own counter: each success advances
 * n by one; a failed decrypt leaves n alone. out needs plain_len + 16 bytes
 * (encrypt) or ct_len - 16 (decrypt) and may equal the input (in place) but
 * must not otherwise overlap it. ad may be NULL when ad_len is 0. */
int fm__noise_encrypt(fm__noise_cipher *c, const uint8_t *ad, size_t ad_len,
                      const uint8_t *plain, size_t plain_len, uint8_t *out,
                      size_t out_cap, size_t *out_len);
int fm__noise_decrypt(fm__noise_cipher *c, const uint8_t *ad, size_t ad_len,
                      const uint8_t *ct, size_t ct_len, uint8_t *out,
                      size_t out_cap, size_t *out_len);
/* The same with an explicit nonce, for datagram transports with a replay
 * window; the cipher's counter is neither used nor changed. The caller must
 * never encrypt twice with one nonce under one key, and should not mix
 * these with the counter functions on the same cipher. */
int fm__noise_encrypt_with_nonce(const fm__noise_cipher *c, uint64_t nonce,
                                 const uint8_t *ad, size_t ad_len,
                                 const uint8_t *plain, size_t plain_len,
                                 uint8_t *out, size_t out_cap, size_t *out_len);
int fm__noise_decrypt_with_nonce(const fm__noise_cipher *c, uint64_t nonce,
                                 const uint8_t *ad, size_t ad_len,
                                 const uint8_t *ct, size_t ct_len, uint8_t *out,
                                 size_t out_cap, size_t *out_len);
/* SetNonce() of the spec. */
int fm__noise_set_nonce(fm__noise_cipher *c, uint64_t nonce);
/* Rekey(): k = first 32 bytes of ENCRYPT(k, 2^64-1, "", 32 zero bytes);
 * n is unchanged. Both sides must rekey at the same point. */
int fm__noise_rekey(fm__noise_cipher *c);

/* sodium_memzero the whole struct. Accept NULL. */
void fm__noise_wipe_cipher(fm__noise_cipher *c);
void fm__noise_wipe_handshake(fm__noise_handshake *hs);

#endif
