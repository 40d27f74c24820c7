/* The daemon's durable state (settings, the peer table) lives in one sqlite3
 * file so that a crash or power loss never leaves it half-written, and so
 * that an upgrade can migrate it in place. This file is the only place that
 * speaks SQL; the rest of the daemon sees store.h. */
#include "daemon/store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

/* Long enough that a second fedmeshd (or the CLI) holding a write lock
 * briefly does not turn into a spurious error, short enough that a wedged
 * holder is reported instead of hanging the event loop forever. */
#define FMD_STORE_BUSY_TIMEOUT_MS 5000
/* "PRAGMA user_version = " plus an int. */
#define FMD_STORE_PRAGMA_MAX 64
/* A database path with "-wal" appended. */
#define FMD_STORE_PATH_MAX 4096

struct fmd_store {
	sqlite3 *db;
	/* Schema version reached at open; statements that touch columns
	 * added by later migrations are chosen by it. */
	int version;
};

/* Forward-only: entry i takes the schema from version i to i + 1. Never
 * edit an entry once released, append a new one instead, because databases
 * in the field have already run the old text. */
static const char *const migrations[] = {
        /* 1: settings and the peer table. */
        "CREATE TABLE settings ("
        " key TEXT PRIMARY KEY,"
        " value TEXT NOT NULL);"
        "CREATE TABLE peers ("
        " node_id TEXT PRIMARY KEY,"
        " addresses TEXT NOT NULL DEFAULT '[]',"
        " source TEXT NOT NULL,"
        " state TEXT NOT NULL,"
        " rtt_ms REAL,"
        " score REAL NOT NULL DEFAULT 0,"
        " last_seen_unix_ms INTEGER NOT NULL DEFAULT 0,"
        " last_error TEXT NOT NULL DEFAULT '');",
        /* 2: when a peer was first seen (for reputation ageing), backfilled
         * from last_seen as the best estimate we have; and an index because
         * the dialer asks "which peers are in state X" on every tick. */
        "ALTER TABLE peers ADD COLUMN"
        " first_seen_unix_ms INTEGER NOT NULL DEFAULT 0;"
        "UPDATE peers SET first_seen_unix_ms = last_seen_unix_ms;"
        "CREATE INDEX peers_state_idx ON peers(state);",
        /* 3: what the session layer keeps per peer: its signed record, as
         * fm_record_encode() wrote it (NULL while unknown), and the
         * reputation counters, so that a restart neither forgets where a
         * peer is nor launders how it behaved. */
        "ALTER TABLE peers ADD COLUMN record BLOB;"
        "ALTER TABLE peers ADD COLUMN invalid REAL NOT NULL DEFAULT 0;"
        "ALTER TABLE peers ADD COLUMN failures REAL NOT NULL DEFAULT 0;"
        "ALTER TABLE peers ADD COLUMN timeouts REAL NOT NULL DEFAULT 0;"
        "ALTER TABLE peers ADD COLUMN successes REAL NOT NULL DEFAULT 0;"
        "ALTER TABLE peers ADD COLUMN bans INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE peers ADD COLUMN"
        " ban_remaining_ms INTEGER NOT NULL DEFAULT 0;",
        /* 4: the durable job queue (src/daemon/jobstore.c speaks its SQL):
         * every job submitted here, from before its 202 to the expiry of
         * its result; and job_runs, the exec jobs this node started, so a
         * job interrupted by a crash here is never started twice. The
         * partial indexes serve the restart (unfinished jobs) and the
         * sweep (expired results). */
        "CREATE TABLE jobs ("
        " id TEXT PRIMARY KEY,"
        " service TEXT NOT NULL,"
        " input BLOB NOT NULL,"
        " timeout_ms INTEGER NOT NULL,"
        " idempotent INTEGER NOT NULL DEFAULT 0,"
        " state TEXT NOT NULL,"
        " created_unix_ms INTEGER NOT NULL,"
        " updated_unix_ms INTEGER NOT NULL,"
        " finished_unix_ms INTEGER NOT NULL DEFAULT 0,"
        " output BLOB,"
        " exit_status INTEGER,"
        " ran_on TEXT,"
        " error TEXT,"
        " attempts TEXT NOT NULL DEFAULT '[]');"
        "CREATE INDEX jobs_created_idx ON jobs(created_unix_ms);"
        "CREATE INDEX jobs_unfinished_idx ON jobs(created_unix_ms)"
        " WHERE finished_unix_ms = 0;"
        "CREATE INDEX jobs_finished_idx ON jobs(finished_unix_ms)"
        " WHERE finished_unix_ms > 0;"
        "CREATE TABLE job_runs ("
        " id TEXT NOT NULL,"
        " service TEXT NOT NULL,"
        " started_unix_ms INTEGER NOT NULL,"
        " finished_unix_ms INTEGER NOT NULL DEFAULT 0,"
        " state TEXT,"
        " exit_status INTEGER,"
        " output BLOB,"
        " error TEXT,"
        " PRIMARY KEY (id, service));",
};

#define FMD_STORE_SCHEMA_LATEST \
	((int)(sizeof(migrations) / sizeof(migrations[0])))

/* Before version 2 there is no first_seen_unix_ms to maintain. */
static const char peer_upsert_v1_sql[] =
        "INSERT INTO peers (node_id, addresses, source, state, rtt_ms, score,"
        " last_seen_unix_ms, last_error)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        " ON CONFLICT (node_id) DO UPDATE SET"
        " addresses = excluded.addresses, source = excluded.source,"
        " state = excluded.state, rtt_ms = excluded.rtt_ms,"
        " score = excluded.score,"
        " last_seen_unix_ms = excluded.last_seen_unix_ms,"
        " last_error = excluded.last_error";

/* first_seen is the first non-zero last_seen ever written, so a peer
 * inserted before it was reached gets it on its first contact. */
static const char peer_upsert_v2_sql[] =
        "INSERT INTO peers (node_id, addresses, source, state, rtt_ms, score,"
        " last_seen_unix_ms, last_error, first_seen_unix_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7)"
        " ON CONFLICT (node_id) DO UPDATE SET"
        " addresses = excluded.addresses, source = excluded.source,"
        " state = excluded.state, rtt_ms = excluded.rtt_ms,"
        " score = excluded.score,"
        " last_seen_unix_ms = excluded.last_seen_unix_ms,"
        " last_error = excluded.last_error,"
        " first_seen_unix_ms = CASE WHEN peers.first_seen_unix_ms = 0"
        " THEN excluded.last_seen_unix_ms ELSE peers.first_seen_unix_ms END";

/* Version 3 adds the record and the reputation counters. */
static const char peer_upsert_v3_sql[] =
        "INSERT INTO peers (node_id, addresses, source, state, rtt_ms, score,"
        " last_seen_unix_ms, last_error, first_seen_unix_ms, record,"
        " invalid, failures, timeouts, successes, bans, ban_remaining_ms)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?7, ?9, ?10, ?11, ?12,"
        " ?13, ?14, ?15)"
        " ON CONFLICT (node_id) DO UPDATE SET"
        " addresses = excluded.addresses, source = excluded.source,"
        " state = excluded.state, rtt_ms = excluded.rtt_ms,"
        " score = excluded.score,"
        " last_seen_unix_ms = excluded.last_seen_unix_ms,"
        " last_error = excluded.last_error,"
        " first_seen_unix_ms = CASE WHEN peers.first_seen_unix_ms = 0"
        " THEN excluded.last_seen_unix_ms ELSE peers.first_seen_unix_ms END,"
        " record = excluded.record, invalid = excluded.invalid,"
        " failures = excluded.failures, timeouts = excluded.timeouts,"
        " successes = excluded.successes, bans = excluded.bans,"
        " ban_remaining_ms = excluded.ban_remaining_ms";

static const char peers_select_v1_sql[] =
        "SELECT node_id, addresses, source, state, rtt_ms, score,"
        " last_seen_unix_ms, last_error FROM peers ORDER BY node_id";

static const char peers_select_v3_sql[] =
        "SELECT node_id, addresses, source, state, rtt_ms, score,"
        " last_seen_unix_ms, last_error, record, invalid, failures,"
        " timeouts, successes, bans, ban_remaining_ms"
        " FROM peers ORDER BY node_id";

static int errno_from_sqlite(int rc)
{
	/* Extended codes carry the primary one in the low byte. */
	switch (rc & 0xff) {
	case SQLITE_OK:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	default:
		return -EIO;
	}
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (!err || err_len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* For the fixed SQL of open and migration only: nothing in it comes from
 * outside, so there is nothing to bind. */
static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t err_len)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		set_err(err, err_len, "%s", sqlite3_errmsg(db));
	return errno_from_sqlite(rc);
}

/* Runs a statement that yields one integer row (PRAGMA user_version,
 * count(*)). */
static int query_int(sqlite3 *db, const char *sql, int *out, char *err,
                     size_t err_len)
{
	sqlite3_stmt *stmt = NULL;
	int ret;
	int rc;

	rc = sqlite3_prepare_v2(db, sql, -1, &stmt, NULL);
	if (rc != SQLITE_OK)
		goto fail;
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW)
		goto fail;
	*out = sqlite3_column_int(stmt, 0);
	ret = 0;
	goto cleanup;
fail:
	/* A statement that finishes without a row still reports SQLITE_DONE,
	 * which is not an error code but is not an answer either. */
	set_err(err, err_len, "%s: %s", sql,
	        rc == SQLITE_DONE ? "no result" : sqlite3_errmsg(db));
	ret = rc == SQLITE_DONE ? -EIO : errno_from_sqlite(rc);
cleanup:
	sqlite3_finalize(stmt);
	return ret;
}

/* Copies a text column into a fixed buffer; -ENOSPC when it does not fit
 * rather than silently truncating an ID or an address list. */
static int column_text_copy(sqlite3 *db, sqlite3_stmt *stmt, int col, char *dst,
                            size_t dst_len)
{
	const unsigned char *text;
	size_t len;

	if (sqlite3_column_type(stmt, col) == SQLITE_NULL) {
		dst[0] = '\0';
		return 0;
	}
	/* text before bytes, so the length is that of the UTF-8 form. */
	text = sqlite3_column_text(stmt, col);
	if (!text)
		return errno_from_sqlite(sqlite3_errcode(db));
	len = (size_t)sqlite3_column_bytes(stmt, col);
	if (len >= dst_len)
		return -ENOSPC;
	memcpy(dst, text, len);
	dst[len] = '\0';
	return 0;
}

/* The struct's char arrays may come from memcpy of network data; binding
 * one that is not terminated would read past it. */
static int field_len(const char *field, size_t size, size_t *len)
{
	*len = strnlen(field, size);
	return *len < size ? 0 : -EINVAL;
}

static int bind_field(sqlite3_stmt *stmt, int idx, const char *field,
                      size_t size)
{
	size_t len;
	int ret;

	ret = field_len(field, size, &len);
	if (ret < 0)
		return ret;
	return errno_from_sqlite(
	        sqlite3_bind_text(stmt, idx, field, (int)len, SQLITE_STATIC));
}

static void store_free(fmd_store *store)
{
	if (!store)
		return;
	sqlite3_close_v2(store->db);
	free(store);
}

static int check_not_newer(int version, char *err, size_t err_len)
{
	if (version <= FMD_STORE_SCHEMA_LATEST)
		return 0;
	set_err(err, err_len,
	        "database schema version %d is newer than this fedmesh (%d); "
	        "refusing to downgrade",
	        version, FMD_STORE_SCHEMA_LATEST);
	return -EPROTO;
}

/* One transaction per step, holding the write lock (BEGIN IMMEDIATE) from
 * before user_version is read, so two processes opening the same file at
 * once cannot both apply the same migration. */
static int migrate(fmd_store *store, int target, char *err, size_t err_len)
{
	char bump[FMD_STORE_PRAGMA_MAX];
	int version = 0;
	int step;
	int ret;

	/* Each pass either applies one migration or stops, so this bound is
	 * only a guard against a user_version that moves under us. */
	for (step = 0; step <= FMD_STORE_SCHEMA_LATEST; step++) {
		ret = exec_sql(store->db, "BEGIN IMMEDIATE", err, err_len);
		if (ret < 0)
			goto cleanup;
		ret = query_int(store->db, "PRAGMA user_version", &version, err,
		                err_len);
		if (ret < 0)
			goto rollback;
		ret = check_not_newer(version, err, err_len);
		if (ret < 0)
			goto rollback;
		if (version >= target) {
			ret = exec_sql(store->db, "COMMIT", err, err_len);
			if (ret < 0)
				goto rollback;
			store->version = version;
			goto cleanup;
		}
		ret = exec_sql(store->db, migrations[version], err, err_len);
		if (ret < 0) {
			set_err(err, err_len,
			        "migration to schema version %d failed: %s",
			        version + 1, sqlite3_errmsg(store->db));
			goto rollback;
		}
		snprintf(bump, sizeof(bump), "PRAGMA user_version = %d",
		         version + 1);
		ret = exec_sql(store->db, bump, err, err_len);
		if (ret < 0)
			goto rollback;
		ret = exec_sql(store->db, "COMMIT", err, err_len);
		if (ret < 0)
			goto rollback;
	}
	set_err(err, err_len, "schema version did not settle at %d", target);
	ret = -EIO;
	goto cleanup;
rollback:
	/* Keeps the first error's message; a failed rollback adds nothing
	 * the caller can act on. */
	sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
cleanup:
	return ret;
}

/* WAL lets the API read while the core writes; without it every peer
 * update would block readers. */
static int enable_wal(sqlite3 *db, char *err, size_t err_len)
{
	sqlite3_stmt *stmt = NULL;
	const unsigned char *mode;
	int ret;
	int rc;

	rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode = WAL", -1, &stmt,
	                        NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		set_err(err, err_len, "cannot set journal_mode: %s",
		        sqlite3_errmsg(db));
		ret = rc == SQLITE_DONE ? -EIO : errno_from_sqlite(rc);
		goto cleanup;
	}
	/* sqlite answers with the mode in force, which is not WAL on e.g.
	 * filesystems without shared memory; that is an error, not a
	 * silent downgrade of our crash guarantees. */
	mode = sqlite3_column_text(stmt, 0);
	if (!mode || strcmp((const char *)mode, "wal") != 0) {
		set_err(err, err_len, "journal_mode is %s, not wal",
		        mode ? (const char *)mode : "unknown");
		ret = -ENOTSUP;
		goto cleanup;
	}
	ret = 0;
cleanup:
	sqlite3_finalize(stmt);
	return ret;
}

int fmd_store_schema_latest(void)
{
	return FMD_STORE_SCHEMA_LATEST;
}

int fmd_store_open(const char *path, fmd_store **out, char *err, size_t err_len)
{
	return fmd_store_open_at(path, FMD_STORE_SCHEMA_LATEST, out, err,
	                         err_len);
}

/* The database holds job inputs and outputs and the peer table: 0600
 * like the keys, whatever the umask. sqlite creates the -wal and -shm
 * files with the database's mode; ones left by an older run are fixed
 * too. Paths sqlite treats specially (":memory:", URIs) are left alone. */
static int make_private(const char *path, char *err, size_t err_len)
{
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	char name[FMD_STORE_PATH_MAX];
	struct stat st;
	size_t i;
	int fd;

	if (path[0] == ':' || strncmp(path, "file:", 5) == 0)
		return 0;
	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		if ((size_t)snprintf(name, sizeof(name), "%s%s", path,
		                     suffixes[i]) >= sizeof(name)) {
			set_err(err, err_len, "path too long: %s", path);
			return -ENAMETOOLONG;
		}
		fd = open(name, O_RDWR | O_CLOEXEC | (i == 0 ? O_CREAT : 0),
		          0600);
		if (fd < 0 && errno == ENOENT && i > 0)
			continue;
		if (fd < 0) {
			set_err(err, err_len, "%s: %s", name, strerror(errno));
			return -errno;
		}
		if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0 &&
		    fchmod(fd, 0600) != 0) {
			set_err(err, err_len, "cannot chmod 600 %s: %s", name,
			        strerror(errno));
			close(fd);
			return -EPERM;
		}
		close(fd);
	}
	return 0;
}

int fmd_store_open_at(const char *path, int target, fmd_store **out, char *err,
                      size_t err_len)
{
	fmd_store *store = NULL;
	int version = 0;
	int enabled = 0;
	int ret;
	int rc;

	set_err(err, err_len, "%s", "");
	if (out)
		*out = NULL;
	if (!path || !out || target < 0 || target > FMD_STORE_SCHEMA_LATEST) {
		set_err(err, err_len, "invalid argument");
		ret = -EINVAL;
		goto fail;
	}
	store = calloc(1, sizeof(*store));
	if (!store) {
		set_err(err, err_len, "out of memory");
		ret = -ENOMEM;
		goto fail;
	}
	ret = make_private(path, err, err_len);
	if (ret != 0)
		goto fail;
	/* One connection per fmd_store, used from one thread at a time. */
	rc = sqlite3_open_v2(path, &store->db,
	                     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
	                             SQLITE_OPEN_NOMUTEX,
	                     NULL);
	if (rc != SQLITE_OK) {
		set_err(err, err_len, "%s: %s", path,
		        store->db ? sqlite3_errmsg(store->db)
		                  : sqlite3_errstr(rc));
		ret = errno_from_sqlite(rc);
		goto fail;
	}
	rc = sqlite3_busy_timeout(store->db, FMD_STORE_BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK) {
		set_err(err, err_len, "%s", sqlite3_errmsg(store->db));
		ret = errno_from_sqlite(rc);
		goto fail;
	}
	/* A crafted database file must not be able to corrupt itself through
	 * writable_schema and friends. */
	rc = sqlite3_db_config(store->db, SQLITE_DBCONFIG_DEFENSIVE, 1,
	                       &enabled);
	if (rc != SQLITE_OK || enabled != 1) {
		set_err(err, err_len, "cannot enable defensive mode: %s",
		        sqlite3_errmsg(store->db));
		ret = rc != SQLITE_OK ? errno_from_sqlite(rc) : -ENOTSUP;
		goto fail;
	}
	/* Refuse a newer database before the pragmas below write to it. */
	ret = query_int(store->db, "PRAGMA user_version", &version, err,
	                err_len);
	if (ret < 0)
		goto fail;
	ret = check_not_newer(version, err, err_len);
	if (ret < 0)
		goto fail;
	ret = enable_wal(store->db, err, err_len);
	if (ret < 0)
		goto fail;
	/* NORMAL in WAL mode can lose the last commits on power loss but never
	 * corrupts; peer state is cheap to relearn. */
	ret = exec_sql(store->db, "PRAGMA synchronous = NORMAL", err, err_len);
	if (ret < 0)
		goto fail;
	ret = exec_sql(store->db, "PRAGMA foreign_keys = ON", err, err_len);
	if (ret < 0)
		goto fail;
	ret = migrate(store, target, err, err_len);
	if (ret < 0)
		goto fail;
	*out = store;
	return 0;
fail:
	store_free(store);
	return ret;
}

void fmd_store_close(fmd_store *store)
{
	if (!store)
		return;
	/* Folds the WAL back so the file is self-contained for backups; a
	 * failure (another reader active) only leaves a larger -wal file. */
	sqlite3_exec(store->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL,
	             NULL);
	store_free(store);
}

struct sqlite3 *fmd_store_db(fmd_store *store)
{
	return store != NULL ? store->db : NULL;
}

int fmd_store_schema_version(fmd_store *store)
{
	int version = 0;
	int ret;

	if (!store)
		return -EINVAL;
	ret = query_int(store->db, "PRAGMA user_version", &version, NULL, 0);
	return ret < 0 ? ret : version;
}

int fmd_store_defensive_enabled(fmd_store *store)
{
	int enabled = 0;
	int rc;

	if (!store)
		return -EINVAL;
	/* -1 queries without changing. */
	rc = sqlite3_db_config(store->db, SQLITE_DBCONFIG_DEFENSIVE, -1,
	                       &enabled);
	if (rc != SQLITE_OK)
		return errno_from_sqlite(rc);
	return enabled ? 1 : 0;
}

int fmd_store_integrity_check(fmd_store *store)
{
	sqlite3_stmt *stmt = NULL;
	const unsigned char *text;
	int ret;
	int rc;

	if (!store)
		return -EINVAL;
	rc = sqlite3_prepare_v2(store->db, "PRAGMA integrity_check", -1, &stmt,
	                        NULL);
	if (rc != SQLITE_OK) {
		ret = errno_from_sqlite(rc);
		goto cleanup;
	}
	/* A healthy database yields exactly one row, "ok"; anything else is a
	 * list of problems. */
	rc = sqlite3_step(stmt);
	if (rc != SQLITE_ROW) {
		ret = -EIO;
		goto cleanup;
	}
	text = sqlite3_column_text(stmt, 0);
	if (!text || strcmp((const char *)text, "ok") != 0) {
		ret = -EIO;
		goto cleanup;
	}
	ret = sqlite3_step(stmt) == SQLITE_DONE ? 0 : -EIO;
cleanup:
	sqlite3_finalize(stmt);
	return ret;
}

int fmd_store_setting_get(fmd_store *store, const char *key, char *buf,
                          size_t buf_len)
{
	sqlite3_stmt *stmt = NULL;
	int ret;
	int rc;

	if (!store || !key || !buf)
		return -EINVAL;
	rc = sqlite3_prepare_v2(store->db,
	                        "SELECT value FROM settings WHERE key = ?1", -1,
	                        &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	if (rc == SQLITE_DONE) {
		ret = -ENOENT;
		goto cleanup;
	}
	if (rc != SQLITE_ROW) {
		ret = errno_from_sqlite(rc);
		goto cleanup;
	}
	if (buf_len == 0) {
		ret = -ENOSPC;
		goto cleanup;
	}
	ret = column_text_copy(store->db, stmt, 0, buf, buf_len);
cleanup:
	sqlite3_finalize(stmt);
	return ret;
}

int fmd_store_setting_set(fmd_store *store, const char *key, const char *value)
{
	sqlite3_stmt *stmt = NULL;
	int rc;

	if (!store || !key || !value)
		return -EINVAL;
	rc = sqlite3_prepare_v2(store->db,
	                        "INSERT INTO settings (key, value)"
	                        " VALUES (?1, ?2) ON CONFLICT (key)"
	                        " DO UPDATE SET value = excluded.value",
	                        -1, &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	sqlite3_finalize(stmt);
	return rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
}

/* sqlite stores NaN as NULL, which the NOT NULL columns refuse: a counter
 * that is not a number is taken as 0, the neutral value. */
static double finite_or_zero(double v)
{
	return isfinite(v) ? v : 0.0;
}

/* Parameters 9..15 of peer_upsert_v3_sql. */
static int bind_record_and_reputation(sqlite3_stmt *stmt,
                                      const fmd_peer_row *row)
{
	const fmd_peer_reputation *rep = &row->reputation;
	int rc;

	rc = row->record_len == 0
	             ? sqlite3_bind_null(stmt, 9)
	             : sqlite3_bind_blob(stmt, 9, row->record,
	                                 (int)row->record_len, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(stmt, 10,
		                         finite_or_zero(rep->invalid));
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(stmt, 11,
		                         finite_or_zero(rep->failures));
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(stmt, 12,
		                         finite_or_zero(rep->timeouts));
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(stmt, 13,
		                         finite_or_zero(rep->successes));
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 14, rep->bans);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 15, rep->ban_remaining_ms);
	return errno_from_sqlite(rc);
}

int fmd_store_peer_upsert(fmd_store *store, const fmd_peer_row *row)
{
	sqlite3_stmt *stmt = NULL;
	const char *sql;
	size_t len;
	int ret;
	int rc;

	if (!store || !row)
		return -EINVAL;
	ret = field_len(row->node_id, sizeof(row->node_id), &len);
	if (ret < 0 || len == 0) {
		ret = -EINVAL;
		goto cleanup;
	}
	if (row->record_len > sizeof(row->record)) {
		ret = -EINVAL;
		goto cleanup;
	}
	if (store->version >= 3)
		sql = peer_upsert_v3_sql;
	else if (store->version == 2)
		sql = peer_upsert_v2_sql;
	else
		sql = peer_upsert_v1_sql;
	rc = sqlite3_prepare_v2(store->db, sql, -1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		ret = errno_from_sqlite(rc);
		goto cleanup;
	}
	ret = bind_field(stmt, 1, row->node_id, sizeof(row->node_id));
	if (ret == 0)
		ret = bind_field(stmt, 2, row->addresses_json,
		                 sizeof(row->addresses_json));
	if (ret == 0)
		ret = bind_field(stmt, 3, row->source, sizeof(row->source));
	if (ret == 0)
		ret = bind_field(stmt, 4, row->state, sizeof(row->state));
	if (ret < 0)
		goto cleanup;
	/* Negative means "never measured", which the schema says with NULL;
	 * the negated test also sends NaN there. */
	rc = !(row->rtt_ms >= 0) ? sqlite3_bind_null(stmt, 5)
	                         : sqlite3_bind_double(stmt, 5, row->rtt_ms);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_double(stmt, 6, row->score);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int64(stmt, 7, row->last_seen_unix_ms);
	if (rc != SQLITE_OK) {
		ret = errno_from_sqlite(rc);
		goto cleanup;
	}
	ret = bind_field(stmt, 8, row->last_error, sizeof(row->last_error));
	if (ret < 0)
		goto cleanup;
	if (store->version >= 3) {
		ret = bind_record_and_reputation(stmt, row);
		if (ret < 0)
			goto cleanup;
	}
	rc = sqlite3_step(stmt);
	ret = rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
cleanup:
	sqlite3_finalize(stmt);
	return ret;
}

int fmd_store_peer_delete(fmd_store *store, const char *node_id)
{
	sqlite3_stmt *stmt = NULL;
	int ret;
	int rc;

	if (!store || !node_id)
		return -EINVAL;
	rc = sqlite3_prepare_v2(store->db,
	                        "DELETE FROM peers WHERE node_id = ?1", -1,
	                        &stmt, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_text(stmt, 1, node_id, -1, SQLITE_STATIC);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(stmt);
	if (rc != SQLITE_DONE) {
		ret = errno_from_sqlite(rc);
		goto cleanup;
	}
	/* Tells the caller its view of the table was stale. */
	ret = sqlite3_changes(store->db) > 0 ? 0 : -ENOENT;
cleanup:
	sqlite3_finalize(stmt);
	return ret;
}

/* Like column_text_copy() for a BLOB; NULL gives 0 bytes. */
static int column_blob_copy(sqlite3 *db, sqlite3_stmt *stmt, int col,
                            uint8_t *dst, size_t dst_len, size_t *len_out)
{
	const void *blob;
	size_t len;

	*len_out = 0;
	if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
		return 0;
	blob = sqlite3_column_blob(stmt, col);
	len = (size_t)sqlite3_column_bytes(stmt, col);
	if (len == 0)
		return 0;
	if (!blob)
		return errno_from_sqlite(sqlite3_errcode(db));
	if (len > dst_len)
		return -ENOSPC;
	memcpy(dst, blob, len);
	*len_out = len;
	return 0;
}

static int peer_row_read(sqlite3 *db, sqlite3_stmt *stmt, fmd_peer_row *row)
{
	int ret;

	memset(row, 0, sizeof(*row));
	/* Values too long for the struct can only come from a database edited
	 * by hand, since upsert cannot write them. */
	ret = column_text_copy(db, stmt, 0, row->node_id, sizeof(row->node_id));
	if (ret == 0)
		ret = column_text_copy(db, stmt, 1, row->addresses_json,
		                       sizeof(row->addresses_json));
	if (ret == 0)
		ret = column_text_copy(db, stmt, 2, row->source,
		                       sizeof(row->source));
	if (ret == 0)
		ret = column_text_copy(db, stmt, 3, row->state,
		                       sizeof(row->state));
	if (ret == 0)
		ret = column_text_copy(db, stmt, 7, row->last_error,
		                       sizeof(row->last_error));
	if (ret < 0)
		return ret;
	row->rtt_ms = sqlite3_column_type(stmt, 4) == SQLITE_NULL
	                      ? -1.0
	                      : sqlite3_column_double(stmt, 4);
	row->score = sqlite3_column_double(stmt, 5);
	row->last_seen_unix_ms = sqlite3_column_int64(stmt, 6);
	if (sqlite3_column_count(stmt) <= 8)
		return 0;
	ret = column_blob_copy(db, stmt, 8, row->record, sizeof(row->record),
	                       &row->record_len);
	if (ret < 0)
		return ret;
	row->reputation.invalid = sqlite3_column_double(stmt, 9);
	row->reputation.failures = sqlite3_column_double(stmt, 10);
	row->reputation.timeouts = sqlite3_column_double(stmt, 11);
	row->reputation.successes = sqlite3_column_double(stmt, 12);
	row->reputation.bans = sqlite3_column_int64(stmt, 13);
	row->reputation.ban_remaining_ms = sqlite3_column_int64(stmt, 14);
	return 0;
}

int fmd_store_peers_foreach(fmd_store *store,
                            int (*cb)(void *ctx, const fmd_peer_row *row),
                            void *ctx)
{
	sqlite3_stmt *stmt = NULL;
	fmd_peer_row row;
	int ret;
	int rc;

	if (!store || !cb)
		return -EINVAL;
	rc = sqlite3_prepare_v2(store->db,
	                        store->version >= 3 ? peers_select_v3_sql
	                                            : peers_select_v1_sql,
	                        -1, &stmt, NULL);
	if (rc != SQLITE_OK) {
		ret = errno_from_sqlite(rc);
		goto cleanup;
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		ret = peer_row_read(store->db, stmt, &row);
		if (ret < 0)
			goto cleanup;
		ret = cb(ctx, &row);
		if (ret != 0)
			goto cleanup;
	}
	ret = rc == SQLITE_DONE ? 0 : errno_from_sqlite(rc);
cleanup:
	sqlite3_finalize(stmt);
	return ret;
}

int fmd_store_peers_clear(fmd_store *store)
{
	if (!store)
		return -EINVAL;
	return exec_sql(store->db, "DELETE FROM peers", NULL, 0);
}

int fmd_store_peer_count(fmd_store *store)
{
	int count = 0;
	int ret;

	if (!store)
		return -EINVAL;
	ret = query_int(store->db, "SELECT count(*) FROM peers", &count, NULL,
	                0);
	return ret < 0 ? ret : count;
}
