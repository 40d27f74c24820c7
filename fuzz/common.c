/* Shared by every harness (fuzz.h): a fake driver with deterministic
 * randomness, the fixed identities and federation key, and the harness
 * peer's handshake material. Deterministic on purpose: libFuzzer and the
 * replay driver must see the same behaviour for the same input. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "core/wire.h"
#include "fuzz.h"

void fz_io_reset(fz_io *ctx)
{
	ctx->rng = 0x853c49e6748fea9bULL;
	ctx->next_stream_id = 1;
	ctx->opened_stream = 0;
	memset(&ctx->opened_to, 0, sizeof(ctx->opened_to));
	ctx->sent_len = 0;
}

void fz_io_free(fz_io *ctx)
{
	free(ctx->sent);
	ctx->sent = NULL;
	ctx->sent_len = 0;
	ctx->sent_cap = 0;
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void io_random(void *ctx, uint8_t *buf, size_t len)
{
	fz_io *f = ctx;
	size_t i;

	for (i = 0; i < len; i += 8) {
		uint64_t v = splitmix64(&f->rng);
		size_t n = len - i < 8 ? len - i : 8;
		memcpy(buf + i, &v, n);
	}
}

static int io_send_datagram(void *ctx, const fm_addr *to, const uint8_t *buf,
                            size_t len)
{
	(void)ctx;
	(void)to;
	(void)buf;
	(void)len;
	return 0;
}

static int io_stream_open(void *ctx, const fm_addr *to, uint64_t *stream_id)
{
	fz_io *f = ctx;

	f->opened_stream = f->next_stream_id++;
	f->opened_to = *to;
	*stream_id = f->opened_stream;
	return 0;
}

static int io_stream_send(void *ctx, uint64_t stream_id, const uint8_t *buf,
                          size_t len)
{
	fz_io *f = ctx;

	(void)stream_id;
	if (f->sent_cap - f->sent_len < len) {
		size_t cap = f->sent_cap == 0 ? 4096 : f->sent_cap;
		uint8_t *grown;
		while (cap - f->sent_len < len)
			cap *= 2;
		grown = realloc(f->sent, cap);
		if (grown == NULL)
			return -ENOMEM;
		f->sent = grown;
		f->sent_cap = cap;
	}
	memcpy(f->sent + f->sent_len, buf, len);
	f->sent_len += len;
	return 0;
}

static void io_stream_close(void *ctx, uint64_t stream_id)
{
	(void)ctx;
	(void)stream_id;
}

static int io_job_execute(void *ctx, const char *job_id, const char *service,
                          const uint8_t *input, size_t input_len,
                          uint64_t timeout_ms)
{
	(void)ctx;
	(void)job_id;
	(void)input;
	(void)input_len;
	(void)timeout_ms;
	return strcmp(service, "echo") == 0 ? 0 : -ENOENT;
}

static int io_send_mdns(void *ctx, uint32_t ifindex, const fm_addr *to,
                        const uint8_t *buf, size_t len)
{
	(void)ctx;
	(void)ifindex;
	(void)to;
	(void)buf;
	(void)len;
	return 0;
}

void fz_io_init(fm_io *io, fz_io *ctx)
{
	memset(io, 0, sizeof(*io));
	io->ctx = ctx;
	io->send_datagram = io_send_datagram;
	io->stream_open = io_stream_open;
	io->stream_send = io_stream_send;
	io->stream_close = io_stream_close;
	io->random_bytes = io_random;
	io->job_execute = io_job_execute;
	io->send_mdns = io_send_mdns;
}

void fz_federation_key(uint8_t key[FM_FEDERATION_KEY_BYTES])
{
	memset(key, FZ_FEDERATION_BYTE, FM_FEDERATION_KEY_BYTES);
}

void fz_identity(uint8_t seed_byte, fm_identity *out)
{
	uint8_t seed[FM_SEED_BYTES];

	memset(seed, seed_byte, sizeof(seed));
	if (fm_identity_from_seed(seed, out) != 0)
		fz_fail("common", "fm_identity_from_seed failed");
}

void fz_node_config(fm_node_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	fz_identity(FZ_SEED_NODE, &cfg->identity);
	fz_federation_key(cfg->federation_key);
	cfg->record_seq = 1;
	if (fm_addr_parse("192.0.2.1:4242", &cfg->advertise[0]) != 0)
		fz_fail("common", "fm_addr_parse failed");
	cfg->advertise_count = 1;
	snprintf(cfg->services[0].name, sizeof(cfg->services[0].name), "echo");
	cfg->services[0].slots = 2;
	cfg->service_count = 1;
	cfg->capacity = 2;
	cfg->peer_port = 4242;
	snprintf(cfg->hostname, sizeof(cfg->hostname), "fuzzhost");
	cfg->dht_disabled = 1;
}

int fz_peer_static(uint8_t secret[32], uint8_t public_key[32])
{
	fm_identity id;

	fz_identity(FZ_SEED_PEER, &id);
	if (crypto_sign_ed25519_sk_to_curve25519(secret, id.secret_key) != 0)
		return -EINVAL;
	crypto_scalarmult_base(public_key, secret);
	fm_identity_wipe(&id);
	return 0;
}

int fz_peer_record(uint8_t *out, size_t cap, size_t *len)
{
	fm_identity id;
	fm_record rec;
	int rc;

	fz_identity(FZ_SEED_PEER, &id);
	memset(&rec, 0, sizeof(rec));
	rec.seq = 7;
	if (fm_addr_parse("192.0.2.2:4242", &rec.addrs[0]) != 0 ||
	    fm_addr_parse("[2001:db8::2]:4242", &rec.addrs[1]) != 0)
		return -EINVAL;
	rec.addr_count = 2;
	snprintf(rec.services[0].name, sizeof(rec.services[0].name), "echo");
	rec.services[0].slots = 4;
	rec.service_count = 1;
	rec.capacity = 4;
	rc = fm_record_sign(&rec, &id);
	if (rc == 0)
		rc = fm_record_encode(&rec, out, cap, len);
	fm_identity_wipe(&id);
	return rc;
}

int fz_peer_hello(uint8_t *out, size_t cap, size_t *len)
{
	uint8_t msg[sizeof(FM__BINDING_LABEL) - 1 + 32];
	uint8_t secret[32], pub[32];
	uint8_t record[FM_RECORD_MAX_BYTES];
	size_t record_len = 0;
	fm_identity id;
	fm__hello hello;
	int rc;

	rc = fz_peer_static(secret, pub);
	if (rc == 0)
		rc = fz_peer_record(record, sizeof(record), &record_len);
	if (rc != 0)
		return rc;
	fz_identity(FZ_SEED_PEER, &id);
	memcpy(msg, FM__BINDING_LABEL, sizeof(FM__BINDING_LABEL) - 1);
	memcpy(msg + sizeof(FM__BINDING_LABEL) - 1, pub, sizeof(pub));
	memcpy(hello.public_key, id.public_key, FM_PUBLIC_KEY_BYTES);
	crypto_sign_detached(hello.signature, NULL, msg, sizeof(msg),
	                     id.secret_key);
	hello.record = record;
	hello.record_len = record_len;
	fm_identity_wipe(&id);
	sodium_memzero(secret, sizeof(secret));
	return fm__hello_encode(&hello, out, cap, len);
}

void fz_mac1(const uint8_t *msg, size_t len, uint8_t out[16])
{
	uint8_t fed[FM_FEDERATION_KEY_BYTES];
	uint8_t key[32];
	crypto_generichash_state st;

	fz_federation_key(fed);
	crypto_generichash_init(&st, NULL, 0, sizeof(key));
	crypto_generichash_update(&st, (const uint8_t *)FM__MAC1_LABEL,
	                          sizeof(FM__MAC1_LABEL) - 1);
	crypto_generichash_update(&st, fed, sizeof(fed));
	crypto_generichash_final(&st, key, sizeof(key));
	crypto_generichash(out, 16, msg, len, key, sizeof(key));
}

void fz_fail(const char *harness, const char *what)
{
	fprintf(stderr, "fuzz_%s: %s\n", harness, what);
	abort();
}
