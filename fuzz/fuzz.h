/* What the fuzz harnesses share: the libFuzzer entry point each defines, a
 * deterministic fm_io (randomness from a counter reset per input, so an
 * input replays exactly), fixed identities and the one federation key every
 * harness uses, and a second "peer" identity whose handshake payload (its
 * hello) and record gen_corpus.c also writes into the seed corpora.
 *
 * Every harness is built twice (docs/FUZZING.md): with libFuzzer under
 * --enable-fuzzing (clang), and in every build with driver.c, which replays
 * fuzz/corpus/NAME and fuzz/regressions/NAME as a make check test. */
#ifndef FM_FUZZ_H
#define FM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#include "fedmesh/fedmesh.h"

/* libFuzzer's entry point: one call per input; must not keep state that
 * changes what a later input does. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The federation key of every harness: 32 bytes of FZ_FEDERATION_BYTE. */
#define FZ_FEDERATION_BYTE 0x5a
/* The clock of the harnesses that drive a node, and the DHT harness's
 * bootstrap contact (fuzz_dht.c; gen_corpus.c replays its first steps). */
#define FZ_NOW_MS 1000000
#define FZ_DHT_BOOTSTRAP "192.0.2.9:4000"
/* Identity seeds: 32 bytes of this value. */
#define FZ_SEED_NODE 0x01 /* the node under test */
#define FZ_SEED_PEER 0x02 /* the harness's side of a handshake */

/* The fake driver behind a node under test. */
typedef struct fz_io {
	uint64_t rng;
	uint64_t next_stream_id;
	uint64_t opened_stream; /* last stream_open, 0 = none */
	fm_addr opened_to;
	/* Bytes the node wrote to its streams, all streams together, in
	 * order (the harness reads frames back from here). */
	uint8_t *sent;
	size_t sent_len, sent_cap;
} fz_io;

/* Resets ctx (randomness, captured bytes) for a new input. */
void fz_io_reset(fz_io *ctx);
void fz_io_free(fz_io *ctx);
/* An fm_io whose callbacks use ctx: random_bytes from a splitmix64
 * counter, stream_open/send captured, datagrams and mDNS discarded, jobs
 * accepted and never finished (the node frees them). */
void fz_io_init(fm_io *io, fz_io *ctx);

void fz_federation_key(uint8_t key[FM_FEDERATION_KEY_BYTES]);
void fz_identity(uint8_t seed_byte, fm_identity *out);
/* A node config with identity FZ_SEED_NODE, the harness federation, one
 * advertised address and the service "echo"; DHT and discovery off. */
void fz_node_config(fm_node_config *cfg);

/* The harness peer (FZ_SEED_PEER): its X25519 static key pair (from its
 * Ed25519 key, as session.c derives it), and its hello: public key,
 * binding signature and a signed record. 0 or a negative errno. */
int fz_peer_static(uint8_t secret[32], uint8_t public_key[32]);
int fz_peer_hello(uint8_t *out, size_t cap, size_t *len);
/* The peer's signed record, encoded. */
int fz_peer_record(uint8_t *out, size_t cap, size_t *len);

/* The keyed BLAKE2b of session.c's first message (mac1). */
void fz_mac1(const uint8_t *msg, size_t len, uint8_t out[16]);

/* Aborts with a message: a harness's own check failed (a parser accepted
 * what it must not, or a round trip changed a value). */
void fz_fail(const char *harness, const char *what) __attribute__((noreturn));

#endif
