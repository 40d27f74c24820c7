/* Signed node records: what a node says about itself (key, addresses,
 * services, capacity), signed with its Ed25519 identity so that anyone can
 * pass a record on and no one can alter it.
 *
 * Encoding (docs/PROTOCOL.md, "Node records"), a msgpack array:
 *   [1 (version), public_key:bin32, seq:uint, addrs:[str, ...],
 *    services:[[name:str, slots:uint], ...], capacity:uint, signature:bin64]
 * The signature is Ed25519 over "fedmesh-record-v1" || the same array
 * without its last element (a 6-element array).
 *
 * The encoding is canonical: one record has exactly one encoding (shortest
 * integer and length forms, addresses in fm_addr_format's form), and decode
 * accepts nothing else, by re-encoding what it read and requiring the same
 * bytes. Without that, one signed record would have many valid encodings,
 * and anything that compares, hashes or deduplicates records by their bytes
 * would be fooled. Records arrive from untrusted peers: decoding checks the
 * structure with fm__msgpack_check before reading, and verifies only with
 * crypto_sign_verify_detached (GUIDE.md, section 4). */
#include <errno.h>
#include <sodium.h>
#include <string.h>

#include "core.h"
#include "wire.h"

#define FM__RECORD_VERSION 1
#define FM__RECORD_ELEMENTS 7 /* signature included */
#define FM__RECORD_SERVICE_ELEMENTS 2
#define FM__RECORD_CONTEXT "fedmesh-record-v1"
#define FM__RECORD_CONTEXT_LEN (sizeof(FM__RECORD_CONTEXT) - 1)
/* The signature element: a bin8 header and 64 bytes. */
#define FM__RECORD_SIG_ELEMENT_BYTES (2 + FM_SIGNATURE_BYTES)
/* Nesting: record array > services array > one service. */
#define FM__RECORD_DEPTH_MAX 3
/* The array, its elements, every address, and per service its array and
 * two elements. */
#define FM__RECORD_ITEMS_MAX                             \
	(1 + FM__RECORD_ELEMENTS + FM_RECORD_ADDRS_MAX + \
	 3 * FM_RECORD_SERVICES_MAX)

/* 1..FM_SERVICE_NAME_MAX bytes of [a-z0-9_.-]. Shared with the job
 * messages and the node's configuration (core.h), so one rule names a
 * service everywhere. */
int fm__service_name_ok(const char *name, size_t len)
{
	size_t i;

	if (len < 1 || len > FM_SERVICE_NAME_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/* The fields a record must have before it can be encoded or signed: counts
 * in range, service names valid, NUL-terminated and not repeated. Addresses
 * are checked as they are formatted. */
static int record_fields_ok(const fm_record *rec)
{
	size_t i, j;

	if (rec->addr_count > FM_RECORD_ADDRS_MAX ||
	    rec->service_count > FM_RECORD_SERVICES_MAX)
		return 0;
	for (i = 0; i < rec->service_count; i++) {
		const char *name = rec->services[i].name;
		size_t len = strnlen(name, sizeof(rec->services[i].name));
		if (!fm__service_name_ok(name, len))
			return 0;
		for (j = 0; j < i; j++)
			if (strcmp(name, rec->services[j].name) == 0)
				return 0;
	}
	return 1;
}

/* Writes the record's array, with or without the signature element.
 * Returns 0, or -EINVAL for an address fm_addr_format refuses; overflow is
 * left for the caller's fm__mp_writer_finish(). */
static int record_write(fm__mp_writer *w, const fm_record *rec,
                        int with_signature)
{
	size_t i;

	fm__mp_write_array(w, with_signature ? FM__RECORD_ELEMENTS
	                                     : FM__RECORD_ELEMENTS - 1);
	fm__mp_write_uint(w, FM__RECORD_VERSION);
	fm__mp_write_bin(w, rec->public_key, sizeof(rec->public_key));
	fm__mp_write_uint(w, rec->seq);
	fm__mp_write_array(w, rec->addr_count);
	for (i = 0; i < rec->addr_count; i++) {
		char text[FM_ADDR_STR_MAX];
		if (fm_addr_format(&rec->addrs[i], text, sizeof(text)) != 0)
			return -EINVAL;
		fm__mp_write_str(w, text, strlen(text));
	}
	fm__mp_write_array(w, rec->service_count);
	for (i = 0; i < rec->service_count; i++) {
		const fm_service *s = &rec->services[i];
		fm__mp_write_array(w, FM__RECORD_SERVICE_ELEMENTS);
		fm__mp_write_str(w, s->name, strlen(s->name));
		fm__mp_write_uint(w, s->slots);
	}
	fm__mp_write_uint(w, rec->capacity);
	if (with_signature)
		fm__mp_write_bin(w, rec->signature, sizeof(rec->signature));
	return 0;
}

/* The bytes the signature covers: context || unsigned encoding. The
 * unsigned part may be at most FM_RECORD_MAX_BYTES minus the signature
 * element (the array header is one byte either way), so that the signed
 * record fits its limit. -EMSGSIZE when it does not. */
static int
record_signed_bytes(const fm_record *rec,
                    uint8_t out[FM__RECORD_CONTEXT_LEN + FM_RECORD_MAX_BYTES],
                    size_t *len)
{
	fm__mp_writer w;
	size_t body_len;
	int rc;

	memcpy(out, FM__RECORD_CONTEXT, FM__RECORD_CONTEXT_LEN);
	fm__mp_writer_init(&w, out + FM__RECORD_CONTEXT_LEN,
	                   FM_RECORD_MAX_BYTES - FM__RECORD_SIG_ELEMENT_BYTES);
	rc = record_write(&w, rec, 0);
	if (rc != 0)
		return rc;
	if (fm__mp_writer_finish(&w, &body_len) != 0)
		return -EMSGSIZE;
	*len = FM__RECORD_CONTEXT_LEN + body_len;
	return 0;
}

int fm_record_sign(fm_record *rec, const fm_identity *id)
{
	uint8_t msg[FM__RECORD_CONTEXT_LEN + FM_RECORD_MAX_BYTES];
	fm_record tmp;
	size_t msg_len;
	int rc;

	if (rec == NULL || id == NULL || !record_fields_ok(rec))
		return -EINVAL;
	/* libsodium signs with the public key stored in the secret key's
	 * second half; a mismatched identity would sign unverifiably. */
	if (sodium_memcmp(id->public_key, id->secret_key + FM_SEED_BYTES,
	                  FM_PUBLIC_KEY_BYTES) != 0)
		return -EINVAL;
	tmp = *rec;
	memcpy(tmp.public_key, id->public_key, sizeof(tmp.public_key));
	fm_node_id_from_public_key(tmp.public_key, tmp.node_id);
	rc = record_signed_bytes(&tmp, msg, &msg_len);
	if (rc != 0)
		return rc;
	if (crypto_sign_detached(tmp.signature, NULL, msg, msg_len,
	                         id->secret_key) != 0)
		return -EINVAL;
	*rec = tmp;
	return 0;
}

int fm_record_encode(const fm_record *rec, uint8_t *out, size_t out_len,
                     size_t *written)
{
	uint8_t buf[FM_RECORD_MAX_BYTES];
	fm__mp_writer w;
	size_t len;
	int rc;

	if (rec == NULL || out == NULL || written == NULL ||
	    !record_fields_ok(rec))
		return -EINVAL;
	fm__mp_writer_init(&w, buf, sizeof(buf));
	rc = record_write(&w, rec, 1);
	if (rc != 0)
		return rc;
	if (fm__mp_writer_finish(&w, &len) != 0)
		return -EMSGSIZE;
	if (len > out_len)
		return -ENOSPC;
	memcpy(out, buf, len);
	*written = len;
	return 0;
}

/* Reads the addresses array into rec. */
static int read_addrs(fm__mp_reader *r, fm_record *rec)
{
	size_t n, i;

	if (fm__mp_read_array(r, &n) != 0 || n > FM_RECORD_ADDRS_MAX)
		return -EBADMSG;
	for (i = 0; i < n; i++) {
		char text[FM_ADDR_STR_MAX];
		const char *s;
		size_t len;
		if (fm__mp_read_str(r, &s, &len) != 0 || len >= sizeof(text) ||
		    memchr(s, '\0', len) != NULL)
			return -EBADMSG;
		memcpy(text, s, len);
		text[len] = '\0';
		if (fm_addr_parse(text, &rec->addrs[i]) != 0)
			return -EBADMSG;
	}
	rec->addr_count = (uint8_t)n;
	return 0;
}

/* Reads the services array into rec. */
static int read_services(fm__mp_reader *r, fm_record *rec)
{
	size_t n, i;

	if (fm__mp_read_array(r, &n) != 0 || n > FM_RECORD_SERVICES_MAX)
		return -EBADMSG;
	for (i = 0; i < n; i++) {
		fm_service *s = &rec->services[i];
		const char *name;
		size_t fields, len;
		uint64_t slots;
		if (fm__mp_read_array(r, &fields) != 0 ||
		    fields != FM__RECORD_SERVICE_ELEMENTS ||
		    fm__mp_read_str(r, &name, &len) != 0 ||
		    !fm__service_name_ok(name, len) ||
		    fm__mp_read_uint(r, &slots) != 0 || slots > UINT32_MAX)
			return -EBADMSG;
		memcpy(s->name, name, len);
		s->name[len] = '\0';
		s->slots = (uint32_t)slots;
	}
	rec->service_count = (uint8_t)n;
	return 0;
}

int fm_record_decode(const uint8_t *buf, size_t len, fm_record *out)
{
	uint8_t again[FM_RECORD_MAX_BYTES];
	uint8_t msg[FM__RECORD_CONTEXT_LEN + FM_RECORD_MAX_BYTES];
	const uint8_t *pk, *sig;
	size_t n, pk_len, sig_len, again_len, msg_len;
	uint64_t version, capacity;
	fm__mp_reader r;
	fm__mp_writer w;
	fm_record rec;

	if (out == NULL || (buf == NULL && len > 0))
		return -EINVAL;
	if (len > FM_RECORD_MAX_BYTES ||
	    fm__msgpack_check(buf, len, FM__RECORD_DEPTH_MAX,
	                      FM__RECORD_ITEMS_MAX) != 0)
		return -EBADMSG;
	memset(&rec, 0, sizeof(rec));
	fm__mp_reader_init(&r, buf, len);
	if (fm__mp_read_array(&r, &n) != 0 || n != FM__RECORD_ELEMENTS ||
	    fm__mp_read_uint(&r, &version) != 0 ||
	    version != FM__RECORD_VERSION ||
	    fm__mp_read_bin(&r, &pk, &pk_len) != 0 ||
	    pk_len != sizeof(rec.public_key) ||
	    fm__mp_read_uint(&r, &rec.seq) != 0 || read_addrs(&r, &rec) != 0 ||
	    read_services(&r, &rec) != 0 ||
	    fm__mp_read_uint(&r, &capacity) != 0 || capacity > UINT32_MAX ||
	    fm__mp_read_bin(&r, &sig, &sig_len) != 0 ||
	    sig_len != sizeof(rec.signature) || fm__mp_reader_end(&r) != 0)
		return -EBADMSG;
	memcpy(rec.public_key, pk, pk_len);
	memcpy(rec.signature, sig, sig_len);
	rec.capacity = (uint32_t)capacity;
	/* Repeated service names are as malformed as bad ones. */
	if (!record_fields_ok(&rec))
		return -EBADMSG;
	/* Canonical form: the record's one encoding is the only one taken. */
	fm__mp_writer_init(&w, again, sizeof(again));
	if (record_write(&w, &rec, 1) != 0 ||
	    fm__mp_writer_finish(&w, &again_len) != 0 || again_len != len ||
	    memcmp(again, buf, len) != 0)
		return -EBADMSG;
	if (record_signed_bytes(&rec, msg, &msg_len) != 0)
		return -EBADMSG;
	if (crypto_sign_verify_detached(rec.signature, msg, msg_len,
	                                rec.public_key) != 0)
		return -EPERM;
	fm_node_id_from_public_key(rec.public_key, rec.node_id);
	*out = rec;
	return 0;
}

int fm_record_supersedes(const fm_record *a, const fm_record *b)
{
	if (a == NULL || b == NULL)
		return 0;
	return memcmp(a->public_key, b->public_key, sizeof(a->public_key)) ==
	               0 &&
	       a->seq > b->seq;
}
