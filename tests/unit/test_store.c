/* Tests of the daemon's sqlite store against real files in a temporary
 * directory: the schema, the migration path, refusal of newer databases and
 * the hardening (WAL, defensive mode) are promises to operators that only
 * show up on disk, so they are checked there, often through a second,
 * independent sqlite3 connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
/* cmocka.h needs the four above first. */
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "daemon/store.h"

#define TEST_PATH_MAX 512
#define TEST_ERR_MAX 256
#define TEST_TEXT_MAX 256
#define TEST_PEERS_MAX 16
/* Enough rows of this size that the peer table spans several pages. */
#define TEST_CORRUPT_PEERS 60
#define TEST_CORRUPT_ADDR_BYTES 900

static char tmpdir[] = "/tmp/fedmesh-test-store-XXXXXX";

static void db_path(char *buf, const char *name)
{
	int n = snprintf(buf, TEST_PATH_MAX, "%s/%s", tmpdir, name);

	assert_true(n > 0 && n < TEST_PATH_MAX);
}

/* A plain connection, without anything store.c sets up, so what it sees is
 * what is in the file. */
static sqlite3 *raw_open(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(
	        sqlite3_open_v2(path, &db,
	                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
	                        NULL),
	        SQLITE_OK);
	return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *stmt = NULL;
	int64_t value;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	value = sqlite3_column_int64(stmt, 0);
	sqlite3_finalize(stmt);
	return value;
}

static void raw_text(sqlite3 *db, const char *sql, char *buf)
{
	sqlite3_stmt *stmt = NULL;
	const unsigned char *text;

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &stmt, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
	text = sqlite3_column_text(stmt, 0);
	assert_non_null(text);
	snprintf(buf, TEST_TEXT_MAX, "%s", (const char *)text);
	sqlite3_finalize(stmt);
}

static void raw_exec(sqlite3 *db, const char *sql)
{
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

static fmd_store *open_ok(const char *path)
{
	char err[TEST_ERR_MAX] = "";
	fmd_store *store = NULL;

	assert_int_equal(fmd_store_open(path, &store, err, sizeof(err)), 0);
	assert_non_null(store);
	assert_string_equal(err, "");
	return store;
}

static void make_row(fmd_peer_row *row, const char *node_id, double rtt_ms,
                     int64_t last_seen_unix_ms)
{
	memset(row, 0, sizeof(*row));
	snprintf(row->node_id, sizeof(row->node_id), "%s", node_id);
	snprintf(row->addresses_json, sizeof(row->addresses_json),
	         "[{\"addr\":\"192.0.2.1:7420\",\"source\":\"bootstrap\"}]");
	snprintf(row->source, sizeof(row->source), "bootstrap");
	snprintf(row->state, sizeof(row->state), "connecting");
	row->rtt_ms = rtt_ms;
	row->score = 1.5;
	row->last_seen_unix_ms = last_seen_unix_ms;
}

struct collected {
	fmd_peer_row rows[TEST_PEERS_MAX];
	int count;
	int stop_after; /* 0 = never stop */
};

static int collect_cb(void *ctx, const fmd_peer_row *row)
{
	struct collected *c = ctx;

	assert_true(c->count < TEST_PEERS_MAX);
	c->rows[c->count++] = *row;
	if (c->stop_after > 0 && c->count == c->stop_after)
		return 7;
	return 0;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	assert_int_equal(clock_gettime(CLOCK_MONOTONIC, &ts), 0);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int group_setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
	char path[TEST_PATH_MAX];
	struct dirent *entry;
	DIR *dir;

	(void)state;
	dir = opendir(tmpdir);
	if (!dir)
		return -1;
	while ((entry = readdir(dir)) != NULL) {
		if (strcmp(entry->d_name, ".") == 0 ||
		    strcmp(entry->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, entry->d_name);
		unlink(path);
	}
	closedir(dir);
	return rmdir(tmpdir);
}

static void test_fresh_db_is_latest_and_wal(void **state)
{
	char path[TEST_PATH_MAX];
	char wal[TEST_PATH_MAX];
	char mode[TEST_TEXT_MAX];
	struct stat st;
	fmd_store *store;
	sqlite3 *raw;

	(void)state;
	db_path(path, "fresh.db");
	db_path(wal, "fresh.db-wal");
	/* Migration 2 exists so the upgrade path is exercised at all. */
	assert_true(fmd_store_schema_latest() >= 2);
	store = open_ok(path);
	assert_int_equal(fmd_store_schema_version(store),
	                 fmd_store_schema_latest());
	/* WAL mode keeps a -wal file beside an open database. */
	assert_int_equal(stat(wal, &st), 0);

	raw = raw_open(path);
	raw_text(raw, "PRAGMA journal_mode", mode);
	assert_string_equal(mode, "wal");
	assert_int_equal(raw_int(raw, "PRAGMA user_version"),
	                 fmd_store_schema_latest());
	sqlite3_close(raw);
	fmd_store_close(store);
	fmd_store_close(NULL);
}

static void test_defensive_mode_on(void **state)
{
	char path[TEST_PATH_MAX];
	fmd_store *store;

	(void)state;
	db_path(path, "defensive.db");
	store = open_ok(path);
	assert_int_equal(fmd_store_defensive_enabled(store), 1);
	assert_int_equal(fmd_store_defensive_enabled(NULL), -EINVAL);
	fmd_store_close(store);
}

static void test_settings(void **state)
{
	char path[TEST_PATH_MAX];
	char buf[TEST_TEXT_MAX];
	char tiny[5];
	fmd_store *store;

	(void)state;
	db_path(path, "settings.db");
	store = open_ok(path);

	assert_int_equal(
	        fmd_store_setting_get(store, "listen", buf, sizeof(buf)),
	        -ENOENT);
	assert_int_equal(fmd_store_setting_set(store, "listen", "0.0.0.0:7420"),
	                 0);
	assert_int_equal(
	        fmd_store_setting_get(store, "listen", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "0.0.0.0:7420");

	assert_int_equal(fmd_store_setting_set(store, "listen", "[::]:7421"),
	                 0);
	assert_int_equal(
	        fmd_store_setting_get(store, "listen", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "[::]:7421");

	/* Exactly room for the value and its terminator, then one short. */
	assert_int_equal(fmd_store_setting_set(store, "name", "abcd"), 0);
	assert_int_equal(
	        fmd_store_setting_get(store, "name", tiny, sizeof(tiny)), 0);
	assert_string_equal(tiny, "abcd");
	assert_int_equal(
	        fmd_store_setting_get(store, "name", tiny, sizeof(tiny) - 1),
	        -ENOSPC);
	assert_int_equal(fmd_store_setting_get(store, "name", tiny, 0),
	                 -ENOSPC);

	/* Values with quotes go through bound parameters intact. */
	assert_int_equal(fmd_store_setting_set(store, "q", "it's \"x\"; --"),
	                 0);
	assert_int_equal(fmd_store_setting_get(store, "q", buf, sizeof(buf)),
	                 0);
	assert_string_equal(buf, "it's \"x\"; --");

	assert_int_equal(fmd_store_setting_set(NULL, "a", "b"), -EINVAL);
	assert_int_equal(fmd_store_setting_get(store, NULL, buf, sizeof(buf)),
	                 -EINVAL);
	fmd_store_close(store);

	store = open_ok(path);
	assert_int_equal(
	        fmd_store_setting_get(store, "listen", buf, sizeof(buf)), 0);
	assert_string_equal(buf, "[::]:7421");
	fmd_store_close(store);
}

static void test_peers(void **state)
{
	char path[TEST_PATH_MAX];
	struct collected c;
	fmd_peer_row row;
	fmd_store *store;
	sqlite3 *raw;

	(void)state;
	db_path(path, "peers.db");
	store = open_ok(path);
	assert_int_equal(fmd_store_peer_count(store), 0);

	/* Inserted out of order, walked in node_id order. */
	make_row(&row, "cc", 30.25, 3000);
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	make_row(&row, "aa", -1.0, 0);
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	make_row(&row, "bb", 12.5, 2000);
	snprintf(row.last_error, sizeof(row.last_error), "timeout 'x'");
	row.score = -4.25;
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	assert_int_equal(fmd_store_peer_count(store), 3);

	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.count, 3);
	assert_string_equal(c.rows[0].node_id, "aa");
	assert_string_equal(c.rows[1].node_id, "bb");
	assert_string_equal(c.rows[2].node_id, "cc");
	/* Never-measured rtt comes back negative. */
	assert_true(c.rows[0].rtt_ms < 0);
	assert_true(c.rows[1].rtt_ms == 12.5);
	assert_true(c.rows[1].score == -4.25);
	assert_int_equal(c.rows[1].last_seen_unix_ms, 2000);
	assert_string_equal(c.rows[1].last_error, "timeout 'x'");
	assert_string_equal(c.rows[1].source, "bootstrap");
	assert_string_equal(c.rows[1].state, "connecting");
	assert_string_equal(
	        c.rows[1].addresses_json,
	        "[{\"addr\":\"192.0.2.1:7420\",\"source\":\"bootstrap\"}]");

	/* ...and is NULL on disk, as the schema says. */
	raw = raw_open(path);
	assert_int_equal(
	        raw_int(raw, "SELECT rtt_ms IS NULL FROM peers WHERE node_id = "
	                     "'aa'"),
	        1);
	assert_int_equal(raw_int(raw, "SELECT rtt_ms IS NULL FROM peers "
	                              "WHERE node_id = 'bb'"),
	                 0);
	sqlite3_close(raw);

	/* Update in place: measured rtt replaces NULL, NaN becomes NULL. */
	make_row(&row, "aa", 7.0, 5000);
	snprintf(row.state, sizeof(row.state), "connected");
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	make_row(&row, "cc", NAN, 3000);
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	assert_int_equal(fmd_store_peer_count(store), 3);
	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.count, 3);
	assert_string_equal(c.rows[0].state, "connected");
	assert_true(c.rows[0].rtt_ms == 7.0);
	assert_int_equal(c.rows[0].last_seen_unix_ms, 5000);
	assert_true(c.rows[2].rtt_ms < 0);

	/* A non-zero return stops the walk and is handed back. */
	memset(&c, 0, sizeof(c));
	c.stop_after = 2;
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 7);
	assert_int_equal(c.count, 2);

	assert_int_equal(fmd_store_peer_delete(store, "bb"), 0);
	assert_int_equal(fmd_store_peer_delete(store, "bb"), -ENOENT);
	assert_int_equal(fmd_store_peer_count(store), 2);
	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.count, 2);
	assert_string_equal(c.rows[0].node_id, "aa");
	assert_string_equal(c.rows[1].node_id, "cc");

	/* Empty or unterminated IDs are refused, not read past. */
	make_row(&row, "", 1.0, 1);
	assert_int_equal(fmd_store_peer_upsert(store, &row), -EINVAL);
	make_row(&row, "dd", 1.0, 1);
	memset(row.node_id, 'x', sizeof(row.node_id));
	assert_int_equal(fmd_store_peer_upsert(store, &row), -EINVAL);
	make_row(&row, "dd", 1.0, 1);
	memset(row.state, 'x', sizeof(row.state));
	assert_int_equal(fmd_store_peer_upsert(store, &row), -EINVAL);
	assert_int_equal(fmd_store_peer_count(store), 2);
	assert_int_equal(fmd_store_peer_upsert(store, NULL), -EINVAL);
	assert_int_equal(fmd_store_peers_foreach(store, NULL, NULL), -EINVAL);
	assert_int_equal(fmd_store_peer_count(NULL), -EINVAL);

	assert_int_equal(fmd_store_integrity_check(store), 0);
	fmd_store_close(store);
}

static void test_first_seen_kept(void **state)
{
	char path[TEST_PATH_MAX];
	fmd_peer_row row;
	fmd_store *store;
	sqlite3 *raw;

	(void)state;
	db_path(path, "first_seen.db");
	store = open_ok(path);
	make_row(&row, "aa", -1.0, 0);
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	row.last_seen_unix_ms = 500;
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	row.last_seen_unix_ms = 900;
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	fmd_store_close(store);

	raw = raw_open(path);
	assert_int_equal(raw_int(raw, "SELECT first_seen_unix_ms FROM peers"),
	                 500);
	assert_int_equal(raw_int(raw, "SELECT last_seen_unix_ms FROM peers"),
	                 900);
	sqlite3_close(raw);
}

static void test_migration_from_v1(void **state)
{
	char path[TEST_PATH_MAX];
	char err[TEST_ERR_MAX];
	char buf[TEST_TEXT_MAX];
	sqlite3_stmt *stmt = NULL;
	struct collected c;
	fmd_peer_row row;
	fmd_store *store = NULL;
	sqlite3 *raw;

	(void)state;
	db_path(path, "migrate.db");
	assert_int_equal(fmd_store_open_at(path, 1, &store, err, sizeof(err)),
	                 0);
	assert_int_equal(fmd_store_schema_version(store), 1);
	make_row(&row, "old-peer", 42.0, 1234);
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	assert_int_equal(fmd_store_setting_set(store, "k", "v"), 0);
	fmd_store_close(store);

	/* Version 1 really lacks what migration 2 adds. */
	raw = raw_open(path);
	assert_int_equal(raw_int(raw, "PRAGMA user_version"), 1);
	assert_int_not_equal(sqlite3_prepare_v2(raw,
	                                        "SELECT first_seen_unix_ms "
	                                        "FROM peers",
	                                        -1, &stmt, NULL),
	                     SQLITE_OK);
	sqlite3_finalize(stmt);
	stmt = NULL;
	sqlite3_close(raw);

	store = open_ok(path);
	assert_int_equal(fmd_store_schema_version(store),
	                 fmd_store_schema_latest());
	assert_int_equal(fmd_store_peer_count(store), 1);
	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.count, 1);
	assert_string_equal(c.rows[0].node_id, "old-peer");
	assert_true(c.rows[0].rtt_ms == 42.0);
	assert_int_equal(c.rows[0].last_seen_unix_ms, 1234);
	assert_int_equal(fmd_store_setting_get(store, "k", buf, sizeof(buf)),
	                 0);
	assert_string_equal(buf, "v");
	assert_int_equal(fmd_store_integrity_check(store), 0);
	fmd_store_close(store);

	raw = raw_open(path);
	assert_int_equal(raw_int(raw, "PRAGMA user_version"),
	                 fmd_store_schema_latest());
	/* Backfilled from last_seen. */
	assert_int_equal(raw_int(raw, "SELECT first_seen_unix_ms FROM peers"),
	                 1234);
	assert_int_equal(raw_int(raw, "SELECT count(*) FROM sqlite_master "
	                              "WHERE type = 'index' AND name = "
	                              "'peers_state_idx'"),
	                 1);
	sqlite3_close(raw);

	/* Forward-only: asking for an older target never downgrades. */
	store = NULL;
	assert_int_equal(fmd_store_open_at(path, 1, &store, err, sizeof(err)),
	                 0);
	assert_int_equal(fmd_store_schema_version(store),
	                 fmd_store_schema_latest());
	fmd_store_close(store);

	store = NULL;
	assert_int_equal(fmd_store_open_at(path, fmd_store_schema_latest() + 1,
	                                   &store, err, sizeof(err)),
	                 -EINVAL);
	assert_null(store);
	assert_int_equal(fmd_store_open_at(path, -1, &store, err, sizeof(err)),
	                 -EINVAL);
	assert_null(store);
}

/* Schema 3: the signed record as a BLOB (NUL bytes and all) and the
 * reputation counters, so a restart keeps both. */
static void test_record_and_reputation(void **state)
{
	char path[TEST_PATH_MAX];
	struct collected c;
	fmd_peer_row row;
	fmd_store *store;
	sqlite3 *raw;
	size_t i;

	(void)state;
	assert_true(fmd_store_schema_latest() >= 3);
	db_path(path, "record.db");
	store = open_ok(path);

	make_row(&row, "aa", 3.0, 100);
	for (i = 0; i < 300; i++)
		row.record[i] = (uint8_t)(i * 7);
	row.record[5] = 0;
	row.record_len = 300;
	row.reputation.invalid = 1.25;
	row.reputation.failures = 2.5;
	row.reputation.timeouts = 0.75;
	row.reputation.successes = 10.0;
	row.reputation.bans = 3;
	row.reputation.ban_remaining_ms = 120000;
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	/* No record yet, and counters that are not numbers. */
	make_row(&row, "bb", -1.0, 0);
	row.reputation.failures = NAN;
	row.reputation.successes = INFINITY;
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);

	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.count, 2);
	assert_int_equal(c.rows[0].record_len, 300);
	for (i = 0; i < 300; i++)
		assert_int_equal(c.rows[0].record[i],
		                 i == 5 ? 0 : (uint8_t)(i * 7));
	assert_true(c.rows[0].reputation.invalid == 1.25);
	assert_true(c.rows[0].reputation.failures == 2.5);
	assert_true(c.rows[0].reputation.timeouts == 0.75);
	assert_true(c.rows[0].reputation.successes == 10.0);
	assert_int_equal(c.rows[0].reputation.bans, 3);
	assert_int_equal(c.rows[0].reputation.ban_remaining_ms, 120000);
	assert_int_equal(c.rows[1].record_len, 0);
	assert_true(c.rows[1].reputation.failures == 0.0);
	assert_true(c.rows[1].reputation.successes == 0.0);

	raw = raw_open(path);
	assert_int_equal(raw_int(raw, "SELECT record IS NULL FROM peers "
	                              "WHERE node_id = 'bb'"),
	                 1);
	assert_int_equal(raw_int(raw, "SELECT length(record) FROM peers "
	                              "WHERE node_id = 'aa'"),
	                 300);
	assert_int_equal(raw_int(raw, "SELECT typeof(record) = 'blob' FROM "
	                              "peers WHERE node_id = 'aa'"),
	                 1);
	sqlite3_close(raw);

	/* An update replaces the record and the counters. */
	make_row(&row, "aa", 3.0, 200);
	row.record[0] = 0x42;
	row.record_len = 1;
	row.reputation.bans = 4;
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.rows[0].record_len, 1);
	assert_int_equal(c.rows[0].record[0], 0x42);
	assert_int_equal(c.rows[0].reputation.bans, 4);
	assert_true(c.rows[0].reputation.invalid == 0.0);

	/* A length past the buffer is refused, not read past. */
	row.record_len = sizeof(row.record) + 1;
	assert_int_equal(fmd_store_peer_upsert(store, &row), -EINVAL);

	/* Joining another federation clears the table. */
	assert_int_equal(fmd_store_peers_clear(store), 0);
	assert_int_equal(fmd_store_peer_count(store), 0);
	assert_int_equal(fmd_store_peers_clear(NULL), -EINVAL);
	assert_int_equal(fmd_store_integrity_check(store), 0);
	fmd_store_close(store);
}

static void test_migration_from_v2(void **state)
{
	char path[TEST_PATH_MAX];
	char err[TEST_ERR_MAX];
	struct collected c;
	fmd_peer_row row;
	fmd_store *store = NULL;
	sqlite3_stmt *stmt = NULL;
	sqlite3 *raw;

	(void)state;
	db_path(path, "migrate2.db");
	assert_int_equal(fmd_store_open_at(path, 2, &store, err, sizeof(err)),
	                 0);
	make_row(&row, "v2-peer", 8.0, 4321);
	/* Schema 2 has nowhere to put these: they are ignored. */
	row.record_len = 3;
	row.reputation.bans = 9;
	assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.count, 1);
	assert_int_equal(c.rows[0].record_len, 0);
	assert_int_equal(c.rows[0].reputation.bans, 0);
	fmd_store_close(store);

	raw = raw_open(path);
	assert_int_equal(raw_int(raw, "PRAGMA user_version"), 2);
	assert_int_not_equal(sqlite3_prepare_v2(raw, "SELECT record FROM peers",
	                                        -1, &stmt, NULL),
	                     SQLITE_OK);
	sqlite3_finalize(stmt);
	sqlite3_close(raw);

	store = open_ok(path);
	assert_int_equal(fmd_store_schema_version(store),
	                 fmd_store_schema_latest());
	memset(&c, 0, sizeof(c));
	assert_int_equal(fmd_store_peers_foreach(store, collect_cb, &c), 0);
	assert_int_equal(c.count, 1);
	assert_string_equal(c.rows[0].node_id, "v2-peer");
	assert_int_equal(c.rows[0].last_seen_unix_ms, 4321);
	/* A neutral prior for what was never counted. */
	assert_int_equal(c.rows[0].record_len, 0);
	assert_true(c.rows[0].reputation.invalid == 0.0);
	assert_true(c.rows[0].reputation.successes == 0.0);
	assert_int_equal(c.rows[0].reputation.bans, 0);
	assert_int_equal(c.rows[0].reputation.ban_remaining_ms, 0);
	assert_int_equal(fmd_store_integrity_check(store), 0);
	fmd_store_close(store);
}

static void test_newer_schema_refused(void **state)
{
	char path[TEST_PATH_MAX];
	char err[TEST_ERR_MAX];
	char expected[TEST_ERR_MAX];
	char sql[TEST_TEXT_MAX];
	char mode[TEST_TEXT_MAX];
	fmd_store *store = (fmd_store *)&store;
	int newer = fmd_store_schema_latest() + 5;
	sqlite3 *raw;

	(void)state;
	db_path(path, "newer.db");
	raw = raw_open(path);
	raw_exec(raw, "CREATE TABLE future (x)");
	snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", newer);
	raw_exec(raw, sql);
	sqlite3_close(raw);

	assert_int_equal(fmd_store_open(path, &store, err, sizeof(err)),
	                 -EPROTO);
	assert_null(store);
	snprintf(expected, sizeof(expected),
	         "database schema version %d is newer than this fedmesh (%d); "
	         "refusing to downgrade",
	         newer, fmd_store_schema_latest());
	assert_string_equal(err, expected);
	/* No err buffer is fine too. */
	assert_int_equal(fmd_store_open(path, &store, NULL, 0), -EPROTO);

	/* Refused before anything was written: not even the journal mode. */
	raw = raw_open(path);
	assert_int_equal(raw_int(raw, "PRAGMA user_version"), newer);
	raw_text(raw, "PRAGMA journal_mode", mode);
	assert_string_equal(mode, "delete");
	sqlite3_close(raw);
}

static void test_not_a_database(void **state)
{
	static const char junk[] = "this is not an sqlite database, it is a "
	                           "text file that happens to be long enough "
	                           "to have a header where sqlite looks\n";
	char path[TEST_PATH_MAX];
	char err[TEST_ERR_MAX];
	fmd_store *store = NULL;
	FILE *f;
	int i;

	(void)state;
	db_path(path, "junk.db");
	f = fopen(path, "w");
	assert_non_null(f);
	for (i = 0; i < 64; i++)
		assert_int_equal(fwrite(junk, 1, sizeof(junk) - 1, f),
		                 sizeof(junk) - 1);
	assert_int_equal(fclose(f), 0);

	assert_int_equal(fmd_store_open(path, &store, err, sizeof(err)), -EIO);
	assert_null(store);
	assert_non_null(strstr(err, "not a database"));
}

/* Many wide rows, so the peer table spans several pages; closed, so the
 * checkpoint on close has moved them all into the main file. */
static void fill_peers(const char *path)
{
	fmd_peer_row row;
	fmd_store *store;
	char id[32];
	int i;

	store = open_ok(path);
	for (i = 0; i < TEST_CORRUPT_PEERS; i++) {
		snprintf(id, sizeof(id), "peer-%03d", i);
		make_row(&row, id, i, i);
		memset(row.addresses_json, 'a', TEST_CORRUPT_ADDR_BYTES);
		row.addresses_json[TEST_CORRUPT_ADDR_BYTES] = '\0';
		assert_int_equal(fmd_store_peer_upsert(store, &row), 0);
	}
	assert_int_equal(fmd_store_integrity_check(store), 0);
	fmd_store_close(store);
}

/* The quiet kind of damage: every page is well-formed and sqlite reads it
 * without complaint, but a row no longer matches its index entry, which
 * only integrity_check reports (as a row of text, not an error code). */
static void test_integrity_check_index_mismatch(void **state)
{
	static const char pattern[] = "aaaaaaaaaabootstrapconnecting";
	char path[TEST_PATH_MAX];
	fmd_store *store;
	struct stat st;
	char *image;
	char *hit;
	int fd;

	(void)state;
	db_path(path, "mismatch.db");
	fill_peers(path);

	assert_int_equal(stat(path, &st), 0);
	image = malloc((size_t)st.st_size);
	assert_non_null(image);
	fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, image, (size_t)st.st_size, 0), st.st_size);
	/* The table record holds addresses, source, state back to back; the
	 * index only holds state, so this edits the table alone. */
	hit = memmem(image, (size_t)st.st_size, pattern, sizeof(pattern) - 1);
	assert_non_null(hit);
	assert_int_equal(
	        pwrite(fd, "X", 1, (hit - image) + (off_t)sizeof(pattern) - 2),
	        1);
	assert_int_equal(close(fd), 0);
	free(image);

	store = open_ok(path);
	assert_int_equal(fmd_store_integrity_check(store), -EIO);
	fmd_store_close(store);
}

/* The loud kind: a page that is not a b-tree page at all. */
static void test_integrity_check_bad_page(void **state)
{
	char path[TEST_PATH_MAX];
	char wal[TEST_PATH_MAX];
	unsigned char page[65536];
	fmd_store *store;
	struct stat st;
	int64_t page_size;
	sqlite3 *raw;
	int fd;

	(void)state;
	db_path(path, "badpage.db");
	db_path(wal, "badpage.db-wal");
	fill_peers(path);
	/* Close checkpoints, so every row is in the main file now. */
	assert_true(stat(wal, &st) != 0 || st.st_size == 0);

	raw = raw_open(path);
	page_size = raw_int(raw, "PRAGMA page_size");
	sqlite3_close(raw);
	assert_true(page_size > 0 && page_size <= (int64_t)sizeof(page));
	assert_int_equal(stat(path, &st), 0);
	assert_true(st.st_size >= 4 * page_size);

	/* Garbage over the last page, a b-tree page of the peer table or its
	 * index; page 1 (header and schema) stays intact so open works. */
	memset(page, 0xa5, sizeof(page));
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(
	        pwrite(fd, page, (size_t)page_size, st.st_size - page_size),
	        page_size);
	assert_int_equal(close(fd), 0);

	store = open_ok(path);
	assert_int_equal(fmd_store_integrity_check(store), -EIO);
	fmd_store_close(store);
	assert_int_equal(fmd_store_integrity_check(NULL), -EINVAL);
}

static void test_busy_waits_then_ebusy(void **state)
{
	char path[TEST_PATH_MAX];
	fmd_store *store;
	int64_t start_ms;
	int64_t waited_ms;
	sqlite3 *raw;

	(void)state;
	db_path(path, "busy.db");
	store = open_ok(path);
	raw = raw_open(path);
	raw_exec(raw, "BEGIN IMMEDIATE");

	start_ms = now_ms();
	assert_int_equal(fmd_store_setting_set(store, "k", "v"), -EBUSY);
	waited_ms = now_ms() - start_ms;
	/* The busy timeout was honoured rather than failing at once. */
	assert_true(waited_ms >= 4000);

	raw_exec(raw, "ROLLBACK");
	sqlite3_close(raw);
	assert_int_equal(fmd_store_setting_set(store, "k", "v"), 0);
	fmd_store_close(store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_fresh_db_is_latest_and_wal),
	        cmocka_unit_test(test_defensive_mode_on),
	        cmocka_unit_test(test_settings),
	        cmocka_unit_test(test_peers),
	        cmocka_unit_test(test_first_seen_kept),
	        cmocka_unit_test(test_migration_from_v1),
	        cmocka_unit_test(test_record_and_reputation),
	        cmocka_unit_test(test_migration_from_v2),
	        cmocka_unit_test(test_newer_schema_refused),
	        cmocka_unit_test(test_not_a_database),
	        cmocka_unit_test(test_integrity_check_index_mismatch),
	        cmocka_unit_test(test_integrity_check_bad_page),
	        cmocka_unit_test(test_busy_waits_then_ebusy),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
