/* fedmeshd's durable state: one sqlite3 database in the state directory
 * (WAL mode, SQLITE_DBCONFIG_DEFENSIVE), with a schema version kept in
 * PRAGMA user_version and forward-only migrations applied at open. */
#ifndef FMD_STORE_H
#define FMD_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fmd_store fmd_store;

/* Current schema version, i.e. the number of migrations in store.c. */
int fmd_store_schema_latest(void);

/* Opens (creating if needed) the database at path and migrates it to the
 * latest schema. On failure returns a negative errno and writes a message
 * into err. A database from a newer fedmesh (user_version above latest) is
 * refused with -EPROTO, never downgraded. */
int fmd_store_open(const char *path, fmd_store **out, char *err,
                   size_t err_len);
/* Like fmd_store_open() but stops at schema version `target` (for tests of
 * the migration path). */
int fmd_store_open_at(const char *path, int target, fmd_store **out, char *err,
                      size_t err_len);
/* Checkpoints the WAL and closes. Accepts NULL. */
void fmd_store_close(fmd_store *store);

int fmd_store_schema_version(fmd_store *store);
/* The connection itself, for modules that keep their SQL in a file of
 * their own (jobstore.c); used on the loop thread only, like the rest. */
struct sqlite3;
struct sqlite3 *fmd_store_db(fmd_store *store);
/* 1 when the connection runs with SQLITE_DBCONFIG_DEFENSIVE, 0 when not,
 * negative errno on error. Exists so tests can prove the hardening is on. */
int fmd_store_defensive_enabled(fmd_store *store);
/* Runs PRAGMA integrity_check; 0 when it says "ok", -EIO otherwise. */
int fmd_store_integrity_check(fmd_store *store);

/* Settings: small key/value strings. get returns -ENOENT when absent,
 * -ENOSPC when buf is too small. */
int fmd_store_setting_get(fmd_store *store, const char *key, char *buf,
                          size_t buf_len);
int fmd_store_setting_set(fmd_store *store, const char *key, const char *value);

#define FMD_PEER_ADDRESSES_MAX 1024 /* bytes of the JSON address list */
#define FMD_PEER_ERROR_MAX 256
/* Bytes of an encoded signed node record (FM_RECORD_MAX_BYTES). */
#define FMD_PEER_RECORD_MAX 1024

/* The reputation counters of a peer, kept so that a restart does not
 * launder a bad peer (schema version 3; zero in older databases). */
typedef struct fmd_peer_reputation {
	double invalid;
	double failures;
	double timeouts;
	double successes;
	int64_t bans;
	int64_t ban_remaining_ms; /* 0 when not banned */
} fmd_peer_reputation;

/* One row of the peer table. addresses_json is a JSON array of objects
 * {"addr":"1.2.3.4:7420","source":"bootstrap"}. */
typedef struct fmd_peer_row {
	char node_id[65];
	char addresses_json[FMD_PEER_ADDRESSES_MAX];
	char source[16];           /* bootstrap, invite, mdns, beacon, dht */
	char state[16];            /* connecting, connected, backoff, banned */
	double rtt_ms;             /* EWMA; negative when never measured */
	double score;              /* reputation */
	int64_t last_seen_unix_ms; /* 0 = never */
	char last_error[FMD_PEER_ERROR_MAX];
	/* The peer's signed record as fm_record_encode() wrote it; 0 bytes
	 * when none is known (stored as NULL). */
	uint8_t record[FMD_PEER_RECORD_MAX];
	size_t record_len;
	fmd_peer_reputation reputation;
} fmd_peer_row;

int fmd_store_peer_upsert(fmd_store *store, const fmd_peer_row *row);
int fmd_store_peer_delete(fmd_store *store, const char *node_id);
/* Deletes every peer (joining another federation). */
int fmd_store_peers_clear(fmd_store *store);
/* Calls cb for each peer ordered by node_id; a non-zero return from cb
 * stops the walk and is returned. */
int fmd_store_peers_foreach(fmd_store *store,
                            int (*cb)(void *ctx, const fmd_peer_row *row),
                            void *ctx);
int fmd_store_peer_count(fmd_store *store);

#endif
