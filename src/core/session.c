/* Sessions between peers: Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b over a
 * reliable stream, with the federation key as the PSK.
 *
 * Why these choices (docs/PROTOCOL.md has the byte-level description):
 * - XX authenticates both sides and gives forward secrecy; psk3 mixes the
 *   federation key into the final message, so only members complete it.
 * - Before any Diffie-Hellman, the first message must carry mac1, a keyed
 *   BLAKE2b of that message under a key derived from the federation key
 *   (WireGuard's mac1 idea): an outsider costs us one hash, gets no byte
 *   back, and the stream is closed.
 * - Each side proves its Ed25519 identity by signing its Noise static key
 *   (libp2p's Noise handshake does the same); the node ID is the hash of
 *   that identity key, so a session is bound to a node ID.
 * - Transport frames use the ciphers' implicit counters: over TCP a
 *   replayed, dropped, reordered or altered frame fails to decrypt and ends
 *   the session. Rekeying is explicit (a REKEY message) after
 *   FM_SESSION_REKEY_MESSAGES frames or FM_SESSION_REKEY_MS.
 * - Keepalive pings measure RTT; a silent session is closed after
 *   FM_SESSION_IDLE_TIMEOUT_MS. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "jobs.h"
#include "wire.h"

/* Room for the largest frame we build: header, message, tag. */
#define FM__TX_MAX (FM_FRAME_HEADER_BYTES + FM_FRAME_MAX_BYTES)

int fm__session_keys_init(fm_node *node)
{
	uint8_t msg[sizeof(FM__BINDING_LABEL) - 1 + FM__NOISE_DH_LEN];

	if (crypto_sign_ed25519_sk_to_curve25519(
	            node->x25519_secret, node->identity.secret_key) != 0)
		return -EINVAL;
	crypto_scalarmult_base(node->x25519_public, node->x25519_secret);
	memcpy(msg, FM__BINDING_LABEL, sizeof(FM__BINDING_LABEL) - 1);
	memcpy(msg + sizeof(FM__BINDING_LABEL) - 1, node->x25519_public,
	       FM__NOISE_DH_LEN);
	crypto_sign_detached(node->binding_sig, NULL, msg, sizeof(msg),
	                     node->identity.secret_key);
	fm__session_set_federation(node);
	return 0;
}

void fm__session_set_federation(fm_node *node)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, sizeof(node->mac1_key));
	crypto_generichash_update(&st, (const uint8_t *)FM__MAC1_LABEL,
	                          sizeof(FM__MAC1_LABEL) - 1);
	crypto_generichash_update(&st, node->federation_key,
	                          FM_FEDERATION_KEY_BYTES);
	crypto_generichash_final(&st, node->mac1_key, sizeof(node->mac1_key));
}

static void mac1(const fm_node *node, const uint8_t *msg, size_t len,
                 uint8_t out[FM__MAC1_BYTES])
{
	crypto_generichash(out, FM__MAC1_BYTES, msg, len, node->mac1_key,
	                   sizeof(node->mac1_key));
}

static void count_error(fm_node *node, enum fm_session_error why)
{
	if ((unsigned)why < FM_SESS_ERROR_COUNT)
		node->stats.session_errors[why]++;
}

static int find_session(const fm_node *node, uint64_t stream_id)
{
	int i;

	for (i = 0; i < FM_SESSIONS_MAX; i++)
		if (node->sessions[i] != NULL &&
		    node->sessions[i]->stream_id == stream_id)
			return i;
	return -1;
}

static int alloc_session(fm_node *node, uint64_t now_ms)
{
	struct fm__session *s;
	int i;

	for (i = 0; i < FM_SESSIONS_MAX; i++)
		if (node->sessions[i] == NULL)
			break;
	if (i == FM_SESSIONS_MAX)
		return -ENOSPC;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->peer = -1;
	s->created_ms = now_ms;
	s->last_rx_ms = now_ms;
	node->sessions[i] = s;
	node->sessions_used++;
	return i;
}

static void free_session(fm_node *node, int index)
{
	struct fm__session *s = node->sessions[index];

	if (s->hs != NULL) {
		fm__noise_wipe_handshake(s->hs);
		free(s->hs);
	}
	fm__noise_wipe_cipher(&s->send);
	fm__noise_wipe_cipher(&s->recv);
	free(s->rx);
	free(s);
	node->sessions[index] = NULL;
	node->sessions_used--;
}

static const char *error_text(enum fm_session_error why)
{
	switch (why) {
	case FM_SESS_BAD_HANDSHAKE:
		return "handshake failed (wrong federation key?)";
	case FM_SESS_BAD_IDENTITY:
		return "identity proof invalid";
	case FM_SESS_WRONG_NODE:
		return "another node answers at this address";
	case FM_SESS_BAD_FRAME:
		return "frame failed authentication";
	case FM_SESS_BAD_MESSAGE:
		return "malformed message";
	case FM_SESS_BAD_RECORD:
		return "invalid node record";
	case FM_SESS_OVERSIZE:
		return "oversize frame";
	case FM_SESS_HANDSHAKE_TIMEOUT:
		return "handshake timed out";
	case FM_SESS_IDLE_TIMEOUT:
		return "no keepalive: session timed out";
	case FM_SESS_BANNED:
		return "peer is banned";
	default:
		return fm_session_error_name(why);
	}
}

/* Ends session `index`. why == FM_SESS_ERROR_COUNT means a normal close.
 * notify_driver: ask the driver to close the stream (not when the driver
 * told us it is gone). */
void fm__session_close(fm_node *node, uint64_t now_ms, int index,
                       enum fm_session_error why, int notify_driver)
{
	struct fm__session *s = node->sessions[index];
	int peer = s->peer;
	int was_open = s->state == FM__SESS_OPEN;
	/* The stream was connected: a timeout from here on is the peer's. */
	int was_connected = s->state != FM__SESS_DIALING;
	fm_addr s_remote = s->remote;

	if (why < FM_SESS_ERROR_COUNT)
		count_error(node, why);
	if (notify_driver && node->io.stream_close != NULL)
		node->io.stream_close(node->io.ctx, s->stream_id);
	free_session(node, index);
	if (peer < 0)
		return;
	{
		struct fm__peer *p = &node->peers[peer];
		if (p->session == index)
			p->session = -1;
		else
			return; /* a duplicate that lost; the peer is fine */
		if (why == FM_SESS_WRONG_NODE)
			fm__peer_remove_addr(p, &s_remote);
		if (why < FM_SESS_ERROR_COUNT && why != FM_SESS_DUPLICATE)
			fm__peer_set_error(p, "%s",
			                   was_connected ? error_text(why)
			                                 : "connect timed out");
		/* A failure attributable to an authenticated peer costs it
		 * reputation (which may ban it); a dial that simply did not
		 * connect (the peer is offline) only backs off. */
		if (p->id_known && p->info.state != FM_PEER_BANNED &&
		    was_connected) {
			if (why == FM_SESS_HANDSHAKE_TIMEOUT ||
			    why == FM_SESS_IDLE_TIMEOUT)
				fm__peer_reputation(node, now_ms, peer,
				                    FM__REP_TIMEOUT);
			else if (why == FM_SESS_BAD_HANDSHAKE)
				fm__peer_reputation(node, now_ms, peer,
				                    FM__REP_FAILURE);
		}
		if (p->info.state != FM_PEER_BANNED)
			fm__peer_schedule_dial(node, now_ms, peer, !was_open);
		fm__peer_changed(node, now_ms, peer);
		/* Jobs in flight on it fail over (at the next tick). */
		if (was_open)
			fm__jobs_peers_changed(node);
	}
}

static int send_msg(fm_node *node, struct fm__session *s, const fm__msg *m);

/* Ends every session; open ones are told why with a CLOSE first, so the
 * peer knows this was orderly and not a network failure. */
void fm__session_close_all(fm_node *node, uint64_t now_ms, const char *reason)
{
	fm__msg m;
	int i;

	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_CLOSE;
	snprintf(m.reason, sizeof(m.reason), "%s", reason);
	for (i = 0; i < FM_SESSIONS_MAX; i++) {
		if (node->sessions[i] == NULL)
			continue;
		if (node->sessions[i]->state == FM__SESS_OPEN)
			(void)send_msg(node, node->sessions[i], &m);
		fm__session_close(node, now_ms, i, FM_SESS_ERROR_COUNT, 1);
	}
}

void fm__sessions_free(fm_node *node)
{
	int i;

	for (i = 0; i < FM_SESSIONS_MAX; i++)
		if (node->sessions[i] != NULL)
			free_session(node, i);
}

static int send_frame(fm_node *node, struct fm__session *s, uint8_t *frame,
                      size_t body_len)
{
	frame[0] = (uint8_t)(body_len >> 8);
	frame[1] = (uint8_t)body_len;
	node->stats.frames_sent++;
	return node->io.stream_send(node->io.ctx, s->stream_id, frame,
	                            FM_FRAME_HEADER_BYTES + body_len);
}

/* Job messages carry chunks of up to FM_JOB_CHUNK_BYTES: too big for the
 * stack buffers below, and 64 KiB is too much to keep per node (the
 * simulator runs thousands), so they are encoded and encrypted in place in
 * one short-lived heap buffer. */
static int send_big_msg(fm_node *node, struct fm__session *s, const fm__msg *m)
{
	uint8_t *frame = malloc(FM__TX_MAX);
	uint8_t *body;
	size_t plain_len = 0, ct_len = 0;
	int rc;

	if (frame == NULL)
		return -ENOMEM;
	body = frame + FM_FRAME_HEADER_BYTES;
	rc = fm__msg_encode(m, body, FM_FRAME_MAX_BYTES - FM__NOISE_TAG_LEN,
	                    &plain_len);
	if (rc == 0)
		rc = fm__noise_encrypt(&s->send, NULL, 0, body, plain_len, body,
		                       FM_FRAME_MAX_BYTES, &ct_len);
	if (rc == 0) {
		s->sent_since_rekey++;
		rc = send_frame(node, s, frame, ct_len);
	}
	free(frame);
	return rc;
}

static int send_msg(fm_node *node, struct fm__session *s, const fm__msg *m)
{
	uint8_t plain[FM_RECORD_MAX_BYTES + 128];
	uint8_t frame[FM_FRAME_HEADER_BYTES + sizeof(plain) +
	              FM__NOISE_TAG_LEN];
	size_t plain_len = 0, ct_len = 0;
	int rc;

	rc = fm__msg_encode(m, plain, sizeof(plain), &plain_len);
	if (rc == -ENOSPC)
		return send_big_msg(node, s, m);
	if (rc != 0)
		return rc;
	rc = fm__noise_encrypt(&s->send, NULL, 0, plain, plain_len,
	                       frame + FM_FRAME_HEADER_BYTES,
	                       sizeof(frame) - FM_FRAME_HEADER_BYTES, &ct_len);
	sodium_memzero(plain, sizeof(plain));
	if (rc != 0)
		return rc;
	s->sent_since_rekey++;
	return send_frame(node, s, frame, ct_len);
}

int fm__session_send(fm_node *node, int index, const fm__msg *m)
{
	struct fm__session *s;

	if (index < 0 || index >= FM_SESSIONS_MAX)
		return -ENOTCONN;
	s = node->sessions[index];
	if (s == NULL || s->state != FM__SESS_OPEN)
		return -ENOTCONN;
	return send_msg(node, s, m);
}

static int send_ping(fm_node *node, struct fm__session *s, uint64_t now_ms)
{
	fm__msg m;

	memset(&m, 0, sizeof(m));
	m.type = FM__MSG_PING;
	m.seq = ++s->ping_seq;
	m.time_ms = now_ms;
	s->next_ping_ms = now_ms + FM_SESSION_KEEPALIVE_MS;
	return send_msg(node, s, &m);
}

static int start_handshake(fm_node *node, struct fm__session *s, int initiator)
{
	uint8_t e[FM__NOISE_DH_LEN];
	int rc;

	s->hs = malloc(sizeof(*s->hs));
	if (s->hs == NULL)
		return -ENOMEM;
	node->io.random_bytes(node->io.ctx, e, sizeof(e));
	rc = fm__noise_handshake_init(s->hs, FM__SESSION_PROTOCOL, initiator,
	                              (const uint8_t *)FM__SESSION_PROLOGUE,
	                              sizeof(FM__SESSION_PROLOGUE) - 1,
	                              node->x25519_secret, NULL,
	                              node->federation_key, 1, e);
	sodium_memzero(e, sizeof(e));
	s->initiator = (uint8_t)initiator;
	s->state = FM__SESS_HANDSHAKE;
	return rc;
}

int fm__session_dial(fm_node *node, uint64_t now_ms, int peer)
{
	struct fm__peer *p = &node->peers[peer];
	struct fm__session *s;
	const fm_addr *addr = NULL;
	uint8_t i, tried;
	int index;
	int rc;

	if (node->io.stream_open == NULL || p->session >= 0)
		return -EINVAL;
	/* Rotate through the dialable addresses, one per attempt. */
	for (tried = 0; tried < p->info.addr_count; tried++) {
		i = (uint8_t)((p->dial_cursor + tried) % p->info.addr_count);
		if (p->info.addrs[i].source != FM_SRC_INBOUND) {
			addr = &p->info.addrs[i].addr;
			p->dial_cursor = i + 1u;
			break;
		}
	}
	if (addr == NULL)
		return -ENOENT;
	index = alloc_session(node, now_ms);
	if (index < 0) {
		count_error(node, FM_SESS_LIMIT);
		return index;
	}
	s = node->sessions[index];
	s->state = FM__SESS_DIALING;
	s->initiator = 1;
	s->remote = *addr;
	s->peer = peer;
	if (p->id_known) {
		s->has_expected_id = 1;
		memcpy(s->expected_id, p->info.node_id, FM_NODE_ID_BYTES);
	}
	rc = node->io.stream_open(node->io.ctx, addr, &s->stream_id);
	if (rc != 0) {
		free_session(node, index);
		fm__peer_set_error(p, "cannot connect: error %d", rc);
		return rc;
	}
	p->session = index;
	p->info.state = FM_PEER_CONNECTING;
	return 0;
}

/* Checks a hello (the handshake payload): the identity key signs the Noise
 * static key the handshake authenticated, and the record belongs to that
 * identity. Fills id and record. */
static enum fm_session_error check_hello(fm_node *node, struct fm__session *s,
                                         const uint8_t *payload, size_t len,
                                         fm_record *record)
{
	uint8_t msg[sizeof(FM__BINDING_LABEL) - 1 + FM__NOISE_DH_LEN];
	fm__hello hello;

	if (fm__hello_decode(payload, len, &hello) != 0)
		return FM_SESS_BAD_IDENTITY;
	memcpy(msg, FM__BINDING_LABEL, sizeof(FM__BINDING_LABEL) - 1);
	if (fm__noise_remote_static(s->hs,
	                            msg + sizeof(FM__BINDING_LABEL) - 1) != 0)
		return FM_SESS_BAD_IDENTITY;
	if (crypto_sign_verify_detached(hello.signature, msg, sizeof(msg),
	                                hello.public_key) != 0)
		return FM_SESS_BAD_IDENTITY;
	fm_node_id_from_public_key(hello.public_key, s->remote_id);
	/* A valid member, but not the one we dialled: the address moved on
	 * (DHCP reuse, a reinstalled machine). Not misbehaviour. */
	if (s->has_expected_id &&
	    memcmp(s->remote_id, s->expected_id, FM_NODE_ID_BYTES) != 0)
		return FM_SESS_WRONG_NODE;
	if (memcmp(s->remote_id, node->identity.node_id, FM_NODE_ID_BYTES) == 0)
		return FM_SESS_SELF;
	if (fm_record_decode(hello.record, hello.record_len, record) != 0 ||
	    memcmp(record->public_key, hello.public_key, FM_PUBLIC_KEY_BYTES) !=
	            0)
		return FM_SESS_BAD_RECORD;
	return FM_SESS_ERROR_COUNT;
}

static int build_hello(const fm_node *node, uint8_t *out, size_t cap,
                       size_t *len)
{
	fm__hello hello;

	memcpy(hello.public_key, node->identity.public_key,
	       FM_PUBLIC_KEY_BYTES);
	memcpy(hello.signature, node->binding_sig, FM_SIGNATURE_BYTES);
	hello.record = node->record_bytes;
	hello.record_len = node->record_len;
	return fm__hello_encode(&hello, out, cap, len);
}

/* Which of two sessions between the same pair survives: the one dialled by
 * the node with the lower ID. Both ends apply the same rule. */
static int keep_new_session(const fm_node *node, const struct fm__session *old,
                            const struct fm__session *fresh)
{
	int we_are_lower = memcmp(node->identity.node_id, fresh->remote_id,
	                          FM_NODE_ID_BYTES) < 0;

	(void)old;
	return fresh->initiator == we_are_lower;
}

/* The handshake is complete and the peer proved identity `s->remote_id`:
 * attach the session to its peer entry. Returns 0, or an error to close. */
static enum fm_session_error session_established(fm_node *node, uint64_t now_ms,
                                                 int index,
                                                 const fm_record *record)
{
	struct fm__session *s = node->sessions[index];
	struct fm__peer *p;
	int contact = s->peer;
	int peer = fm__peer_find(node, s->remote_id);
	uint8_t i;

	if (contact >= 0 && !node->peers[contact].id_known) {
		if (peer >= 0) {
			/* A contact turned out to be a known peer: fold its
			 * address in and drop the contact. */
			struct fm__peer *c = &node->peers[contact];
			for (i = 0; i < c->info.addr_count; i++)
				fm__peer_add_addr(&node->peers[peer],
				                  &c->info.addrs[i].addr,
				                  c->info.addrs[i].source);
			c->session = -1;
			s->peer = -1;
			fm__peer_forget(node, contact);
			peer = fm__peer_find(node, s->remote_id);
		} else {
			peer = contact;
			memcpy(node->peers[peer].info.node_id, s->remote_id,
			       FM_NODE_ID_BYTES);
			node->peers[peer].id_known = 1;
		}
	} else if (contact >= 0 && contact != peer) {
		/* Dialled a known peer but another node answered: already
		 * refused by the expected-ID check; be defensive. */
		return FM_SESS_BAD_IDENTITY;
	}
	if (peer < 0) {
		int rc = fm__peer_new(node, now_ms);
		if (rc < 0)
			return FM_SESS_LIMIT;
		peer = rc;
		p = &node->peers[peer];
		memcpy(p->info.node_id, s->remote_id, FM_NODE_ID_BYTES);
		p->id_known = 1;
		p->info.source = FM_SRC_INBOUND;
	}
	p = &node->peers[peer];
	if (p->info.state == FM_PEER_BANNED)
		return FM_SESS_BANNED;
	if (p->session >= 0 && p->session != index) {
		struct fm__session *old = node->sessions[p->session];
		if (old->state == FM__SESS_OPEN &&
		    !keep_new_session(node, old, s))
			return FM_SESS_DUPLICATE;
		/* The new session wins: the old one goes quietly. */
		old->peer = -1;
		count_error(node, FM_SESS_DUPLICATE);
		if (node->io.stream_close != NULL)
			node->io.stream_close(node->io.ctx, old->stream_id);
		free_session(node, p->session);
	}
	s->peer = peer;
	p->session = index;
	if (!p->info.has_record ||
	    fm_record_supersedes(record, &p->info.record))
		p->info.record = *record;
	p->info.has_record = 1;
	for (i = 0; i < record->addr_count; i++)
		fm__peer_add_addr(p, &record->addrs[i], FM_SRC_RECORD);
	if (!s->initiator)
		fm__peer_add_addr(p, &s->remote, FM_SRC_INBOUND);
	if (s->initiator && s->msg1_sent_ms > 0)
		fm__peer_record_rtt(p, (double)(now_ms - s->msg1_sent_ms));
	p->info.state = FM_PEER_CONNECTED;
	p->info.last_seen_ms = now_ms;
	p->info.last_error[0] = '\0';
	p->dial_failures = 0;
	node->stats.handshakes_completed++;
	/* A session proves the peer holds its key: the DHT may use it. We
	 * know the address we dialled serves UDP too (same port); for an
	 * inbound session only its advertised addresses are candidates, to
	 * be challenged (the TCP source port is not its UDP port). */
	if (node->dht != NULL) {
		if (s->initiator) {
			(void)fm__dht_add_proven(node->dht, now_ms,
			                         s->remote_id, &s->remote);
		} else {
			for (i = 0; i < record->addr_count; i++)
				(void)fm__dht_add_candidate(node->dht, now_ms,
				                            s->remote_id,
				                            &record->addrs[i]);
		}
	}
	if (node->dial_failures_in_row >= FM_DIAL_NETWORK_BACK_FAILURES)
		fm__peer_network_back(node, now_ms);
	node->dial_failures_in_row = 0;
	fm__peer_reputation(node, now_ms, peer, FM__REP_SUCCESS);
	/* A new candidate for jobs (or a replaced session: jobs sent on the
	 * old one fail over). */
	fm__jobs_peers_changed(node);
	return FM_SESS_ERROR_COUNT;
}

static enum fm_session_error finish_handshake(fm_node *node, uint64_t now_ms,
                                              int index)
{
	struct fm__session *s = node->sessions[index];

	if (fm__noise_split(s->hs, &s->send, &s->recv) != 0)
		return FM_SESS_BAD_HANDSHAKE;
	fm__noise_wipe_handshake(s->hs);
	free(s->hs);
	s->hs = NULL;
	s->state = FM__SESS_OPEN;
	s->last_rx_ms = now_ms;
	s->rekey_at_ms = now_ms + FM_SESSION_REKEY_MS;
	s->sent_since_rekey = 0;
	return FM_SESS_ERROR_COUNT;
}

/* Responder, first frame: mac1 || Noise message 1. */
static enum fm_session_error on_msg1(fm_node *node, int index,
                                     const uint8_t *body, size_t len)
{
	struct fm__session *s = node->sessions[index];
	uint8_t want[FM__MAC1_BYTES];
	uint8_t payload[64];
	uint8_t hello[FM__HELLO_MAX_BYTES];
	uint8_t frame[FM_FRAME_HEADER_BYTES + FM__HELLO_MAX_BYTES + 256];
	size_t payload_len = 0, hello_len = 0, out_len = 0;

	if (len < FM__MAC1_BYTES + FM__NOISE_DH_LEN || len > FM__MSG1_MAX_BYTES)
		return FM_SESS_BAD_MAC;
	mac1(node, body + FM__MAC1_BYTES, len - FM__MAC1_BYTES, want);
	if (crypto_verify_16(want, body) != 0)
		return FM_SESS_BAD_MAC;
	/* Only now, for a member, does the handshake cost a DH. */
	if (start_handshake(node, s, 0) != 0 ||
	    fm__noise_read_message(s->hs, body + FM__MAC1_BYTES,
	                           len - FM__MAC1_BYTES, payload,
	                           sizeof(payload), &payload_len) != 0)
		return FM_SESS_BAD_HANDSHAKE;
	if (build_hello(node, hello, sizeof(hello), &hello_len) != 0 ||
	    fm__noise_write_message(
	            s->hs, hello, hello_len, frame + FM_FRAME_HEADER_BYTES,
	            sizeof(frame) - FM_FRAME_HEADER_BYTES, &out_len) != 0)
		return FM_SESS_BAD_HANDSHAKE;
	send_frame(node, s, frame, out_len);
	return FM_SESS_ERROR_COUNT;
}

/* Initiator: Noise message 2 carries the responder's hello. */
static enum fm_session_error on_msg2(fm_node *node, uint64_t now_ms, int index,
                                     const uint8_t *body, size_t len)
{
	struct fm__session *s = node->sessions[index];
	uint8_t payload[FM__HELLO_MAX_BYTES];
	uint8_t hello[FM__HELLO_MAX_BYTES];
	uint8_t frame[FM_FRAME_HEADER_BYTES + FM__HELLO_MAX_BYTES + 256];
	size_t payload_len = 0, hello_len = 0, out_len = 0;
	enum fm_session_error why;
	fm_record record;

	if (fm__noise_read_message(s->hs, body, len, payload, sizeof(payload),
	                           &payload_len) != 0)
		return FM_SESS_BAD_HANDSHAKE;
	why = check_hello(node, s, payload, payload_len, &record);
	if (why != FM_SESS_ERROR_COUNT)
		return why;
	if (build_hello(node, hello, sizeof(hello), &hello_len) != 0 ||
	    fm__noise_write_message(
	            s->hs, hello, hello_len, frame + FM_FRAME_HEADER_BYTES,
	            sizeof(frame) - FM_FRAME_HEADER_BYTES, &out_len) != 0)
		return FM_SESS_BAD_HANDSHAKE;
	send_frame(node, s, frame, out_len);
	why = finish_handshake(node, now_ms, index);
	if (why != FM_SESS_ERROR_COUNT)
		return why;
	why = session_established(node, now_ms, index, &record);
	if (why == FM_SESS_ERROR_COUNT)
		send_ping(node, s, now_ms);
	return why;
}

/* Responder: Noise message 3 carries the initiator's hello and the PSK. */
static enum fm_session_error on_msg3(fm_node *node, uint64_t now_ms, int index,
                                     const uint8_t *body, size_t len)
{
	struct fm__session *s = node->sessions[index];
	uint8_t payload[FM__HELLO_MAX_BYTES];
	size_t payload_len = 0;
	enum fm_session_error why;
	fm_record record;

	if (fm__noise_read_message(s->hs, body, len, payload, sizeof(payload),
	                           &payload_len) != 0)
		return FM_SESS_BAD_HANDSHAKE;
	why = check_hello(node, s, payload, payload_len, &record);
	if (why != FM_SESS_ERROR_COUNT)
		return why;
	why = finish_handshake(node, now_ms, index);
	if (why != FM_SESS_ERROR_COUNT)
		return why;
	why = session_established(node, now_ms, index, &record);
	if (why == FM_SESS_ERROR_COUNT)
		send_ping(node, s, now_ms);
	return why;
}

static enum fm_session_error on_transport(fm_node *node, uint64_t now_ms,
                                          int index, uint8_t *body, size_t len)
{
	struct fm__session *s = node->sessions[index];
	struct fm__peer *p = s->peer >= 0 ? &node->peers[s->peer] : NULL;
	size_t plain_len = 0;
	fm_record record;
	fm__msg m;
	int rc;

	/* Decrypt in place: the counter nonce makes a replayed, reordered or
	 * altered frame fail here. */
	if (fm__noise_decrypt(&s->recv, NULL, 0, body, len, body, len,
	                      &plain_len) != 0)
		return FM_SESS_BAD_FRAME;
	s->last_rx_ms = now_ms;
	if (p != NULL)
		p->info.last_seen_ms = now_ms;
	rc = fm__msg_decode(body, plain_len, &m);
	if (rc == -ENOTSUP)
		return FM_SESS_ERROR_COUNT; /* a newer peer: ignore */
	if (rc != 0)
		return FM_SESS_BAD_MESSAGE;
	switch (m.type) {
	case FM__MSG_PING:
		m.type = FM__MSG_PONG;
		send_msg(node, s, &m);
		break;
	case FM__MSG_PONG:
		if (m.seq == s->ping_seq && m.time_ms <= now_ms && p != NULL) {
			fm__peer_record_rtt(p, (double)(now_ms - m.time_ms));
			/* An RTT update alone is persisted at most once per
			 * FM_PEER_PERSIST_RTT_MS: not a store write per pong.
			 */
			if (now_ms >= p->persisted_ms + FM_PEER_PERSIST_RTT_MS)
				fm__peer_changed(node, now_ms, s->peer);
		}
		break;
	case FM__MSG_RECORD:
		if (fm_record_decode(m.record, m.record_len, &record) != 0 ||
		    p == NULL ||
		    memcmp(record.node_id, p->info.node_id, FM_NODE_ID_BYTES) !=
		            0)
			return FM_SESS_BAD_RECORD;
		if (fm_record_supersedes(&record, &p->info.record)) {
			uint8_t i;
			p->info.record = record;
			for (i = 0; i < record.addr_count; i++)
				fm__peer_add_addr(p, &record.addrs[i],
				                  FM_SRC_RECORD);
			node->stats.records_accepted++;
			fm__peer_changed(node, now_ms, s->peer);
			fm__jobs_peers_changed(node); /* services may differ */
		}
		break;
	case FM__MSG_REKEY:
		if (fm__noise_rekey(&s->recv) != 0)
			return FM_SESS_BAD_FRAME;
		break;
	case FM__MSG_CLOSE:
		return FM_SESS_ERROR_COUNT + 1; /* orderly close by the peer */
	default:
		/* Jobs (jobs.c). The session may be gone when this returns
		 * (a peer banned for a failure): nothing here touches it. */
		if (FM__MSG_IS_JOB(m.type) && p != NULL &&
		    fm__jobs_on_msg(node, now_ms, index, &m) != 0)
			return FM_SESS_BAD_MESSAGE;
		break;
	}
	return FM_SESS_ERROR_COUNT;
}

static enum fm_session_error on_frame(fm_node *node, uint64_t now_ms, int index,
                                      uint8_t *body, size_t len)
{
	struct fm__session *s = node->sessions[index];

	node->stats.frames_received++;
	if (s->state == FM__SESS_OPEN)
		return on_transport(node, now_ms, index, body, len);
	if (s->state != FM__SESS_HANDSHAKE)
		return FM_SESS_BAD_MESSAGE;
	if (!s->initiator && s->hs == NULL)
		return on_msg1(node, index, body, len);
	if (s->initiator)
		return on_msg2(node, now_ms, index, body, len);
	return on_msg3(node, now_ms, index, body, len);
}

/* An invalid message from an authenticated peer costs it dearly. */
static int is_invalid(enum fm_session_error why)
{
	return why == FM_SESS_BAD_FRAME || why == FM_SESS_BAD_MESSAGE ||
	       why == FM_SESS_BAD_RECORD || why == FM_SESS_BAD_IDENTITY;
}

static void fail_session(fm_node *node, uint64_t now_ms, int index,
                         enum fm_session_error why)
{
	struct fm__session *s = node->sessions[index];
	int peer = s->peer;

	if (why == FM_SESS_ERROR_COUNT + 1) {
		fm__session_close(node, now_ms, index, FM_SESS_ERROR_COUNT, 1);
		return;
	}
	if (is_invalid(why) && peer >= 0 && node->peers[peer].id_known) {
		fm__session_close(node, now_ms, index, why, 1);
		fm__peer_reputation(node, now_ms, peer, FM__REP_INVALID);
		return;
	}
	fm__session_close(node, now_ms, index, why, 1);
}

/* ---- driver entry points ---------------------------------------------------
 */

void fm_node_stream_opened(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                           const fm_addr *remote, int incoming)
{
	uint8_t frame[FM_FRAME_HEADER_BYTES + FM__MSG1_MAX_BYTES];
	struct fm__session *s;
	size_t out_len = 0;
	int index;

	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	node->stats.streams_opened++;
	if (incoming) {
		int handshaking = 0, oldest = -1, i;
		for (i = 0; i < FM_SESSIONS_MAX; i++) {
			struct fm__session *o = node->sessions[i];
			if (o == NULL || o->initiator ||
			    o->state == FM__SESS_OPEN)
				continue;
			handshaking++;
			if (oldest < 0 ||
			    o->created_ms < node->sessions[oldest]->created_ms)
				oldest = i;
		}
		/* Unauthenticated connections are capped; the oldest goes. */
		if (handshaking >= node->handshakes_max && oldest >= 0)
			fm__session_close(node, now_ms, oldest, FM_SESS_LIMIT,
			                  1);
		index = alloc_session(node, now_ms);
		if (index < 0) {
			count_error(node, FM_SESS_LIMIT);
			if (node->io.stream_close != NULL)
				node->io.stream_close(node->io.ctx, stream_id);
			return;
		}
		s = node->sessions[index];
		s->stream_id = stream_id;
		s->state = FM__SESS_HANDSHAKE;
		if (remote != NULL)
			s->remote = *remote;
		return;
	}
	index = find_session(node, stream_id);
	if (index < 0 || node->sessions[index]->state != FM__SESS_DIALING) {
		if (node->io.stream_close != NULL)
			node->io.stream_close(node->io.ctx, stream_id);
		return;
	}
	s = node->sessions[index];
	if (start_handshake(node, s, 1) != 0 ||
	    fm__noise_write_message(
	            s->hs, NULL, 0,
	            frame + FM_FRAME_HEADER_BYTES + FM__MAC1_BYTES,
	            sizeof(frame) - FM_FRAME_HEADER_BYTES - FM__MAC1_BYTES,
	            &out_len) != 0) {
		fm__session_close(node, now_ms, index, FM_SESS_BAD_HANDSHAKE,
		                  1);
		return;
	}
	mac1(node, frame + FM_FRAME_HEADER_BYTES + FM__MAC1_BYTES, out_len,
	     frame + FM_FRAME_HEADER_BYTES);
	s->msg1_sent_ms = now_ms;
	s->created_ms = now_ms; /* the handshake timer starts now */
	send_frame(node, s, frame, FM__MAC1_BYTES + out_len);
}

void fm_node_stream_data(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                         const uint8_t *buf, size_t len)
{
	struct fm__session *s;
	size_t off = 0;
	int index;

	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	node->stats.stream_bytes_received += len;
	index = find_session(node, stream_id);
	if (index < 0)
		return;
	s = node->sessions[index];
	if (s->state == FM__SESS_DIALING)
		return;
	while (off < len) {
		size_t need, take;
		size_t frame_len;
		enum fm_session_error why;

		/* Grow the buffer to what the current frame needs, never
		 * beyond the largest frame. */
		need = FM_FRAME_HEADER_BYTES;
		if (s->rx_len >= FM_FRAME_HEADER_BYTES)
			need += ((size_t)s->rx[0] << 8) | s->rx[1];
		if (s->rx_cap < need) {
			size_t cap = s->rx_cap == 0 ? 256 : s->rx_cap;
			uint8_t *grown;
			while (cap < need)
				cap *= 2;
			if (cap > FM__TX_MAX)
				cap = FM__TX_MAX;
			grown = realloc(s->rx, cap);
			if (grown == NULL) {
				fail_session(node, now_ms, index,
				             FM_SESS_LIMIT);
				return;
			}
			s->rx = grown;
			s->rx_cap = cap;
		}
		take = need - s->rx_len;
		if (take > len - off)
			take = len - off;
		memcpy(s->rx + s->rx_len, buf + off, take);
		s->rx_len += take;
		off += take;
		if (s->rx_len < FM_FRAME_HEADER_BYTES)
			break;
		frame_len = ((size_t)s->rx[0] << 8) | s->rx[1];
		/* Before authentication only a small first message is
		 * acceptable: no buffering of 64 KiB for strangers. */
		if (s->state == FM__SESS_HANDSHAKE && !s->initiator &&
		    s->hs == NULL && frame_len > FM__MSG1_MAX_BYTES) {
			fail_session(node, now_ms, index, FM_SESS_BAD_MAC);
			return;
		}
		if (s->rx_len < FM_FRAME_HEADER_BYTES + frame_len)
			continue;
		why = on_frame(node, now_ms, index,
		               s->rx + FM_FRAME_HEADER_BYTES, frame_len);
		if (node->sessions[index] != s)
			return; /* replaced by a duplicate-session decision */
		s->rx_len = 0;
		if (why != FM_SESS_ERROR_COUNT) {
			fail_session(node, now_ms, index, why);
			return;
		}
	}
}

void fm_node_stream_closed(fm_node *node, uint64_t now_ms, uint64_t stream_id,
                           int error)
{
	int index;

	(void)error;
	if (now_ms > node->last_now_ms)
		node->last_now_ms = now_ms;
	node->stats.streams_closed++;
	index = find_session(node, stream_id);
	if (index < 0)
		return;
	if (node->sessions[index]->peer >= 0 &&
	    node->sessions[index]->state == FM__SESS_DIALING)
		fm__peer_set_error(&node->peers[node->sessions[index]->peer],
		                   "cannot connect: error %d", error);
	fm__session_close(node, now_ms, index, FM_SESS_ERROR_COUNT, 0);
}

uint64_t fm__session_tick(fm_node *node, uint64_t now_ms)
{
	uint64_t next = FM_DEADLINE_NONE;
	int i;

	/* Runs after every datagram and event: a node with no session (a
	 * DHT-only node) skips the scan. */
	if (node->sessions_used == 0)
		return next;
	for (i = 0; i < FM_SESSIONS_MAX; i++) {
		struct fm__session *s = node->sessions[i];
		uint64_t deadline;

		if (s == NULL)
			continue;
		if (s->state != FM__SESS_OPEN) {
			deadline =
			        s->created_ms + FM_SESSION_HANDSHAKE_TIMEOUT_MS;
			if (now_ms >= deadline) {
				fm__session_close(node, now_ms, i,
				                  FM_SESS_HANDSHAKE_TIMEOUT, 1);
				continue;
			}
			if (deadline < next)
				next = deadline;
			continue;
		}
		if (now_ms >= s->last_rx_ms + FM_SESSION_IDLE_TIMEOUT_MS) {
			fm__session_close(node, now_ms, i, FM_SESS_IDLE_TIMEOUT,
			                  1);
			continue;
		}
		if (s->sent_since_rekey >= FM_SESSION_REKEY_MESSAGES ||
		    now_ms >= s->rekey_at_ms) {
			fm__msg m;
			memset(&m, 0, sizeof(m));
			m.type = FM__MSG_REKEY;
			/* Sent under the old key; both sides switch after it.
			 */
			if (send_msg(node, s, &m) == 0 &&
			    fm__noise_rekey(&s->send) == 0) {
				node->stats.rekeys++;
				s->sent_since_rekey = 0;
				s->rekey_at_ms = now_ms + FM_SESSION_REKEY_MS;
			}
		}
		if (now_ms >= s->next_ping_ms)
			send_ping(node, s, now_ms);
		deadline = s->last_rx_ms + FM_SESSION_IDLE_TIMEOUT_MS;
		if (s->next_ping_ms < deadline)
			deadline = s->next_ping_ms;
		if (s->rekey_at_ms < deadline)
			deadline = s->rekey_at_ms;
		if (deadline < next)
			next = deadline;
	}
	return next;
}
